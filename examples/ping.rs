//! The Pingora ceiling for the rule-path benchmark: the same listener setup as kefu-edge,
//! answering every request from `request_filter` with a fixed small JSON body after reading
//! the request body (so POST keep-alive works like in the real service). Nothing else: no
//! edge filter, limits, parsing, routing or metrics. `bench/rule_path.sh` runs it on
//! 127.0.0.1:8092 to show how close kefu-edge stays to what Pingora itself can do.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;

const BODY: &[u8] =
    br#"{"reply":"pong","intent":"other","confidence":0.0,"source":"rule","trace_id":"0"}"#;

struct Ping;

#[async_trait]
impl ProxyHttp for Ping {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        while session.read_request_body().await?.is_some() {}
        let mut header = ResponseHeader::build(200, Some(2))?;
        header.insert_header("content-type", "application/json")?;
        header.insert_header("content-length", BODY.len())?;
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session
            .write_response_body(Some(Bytes::from_static(BODY)), true)
            .await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Err(Error::new_str("ping has no upstream"))
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8092".into());
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, Ping);
    service.add_tcp(&addr);
    server.add_service(service);
    server.run_forever();
}
