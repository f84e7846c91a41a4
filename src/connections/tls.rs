//! TLS on the chat listener's HTTPS addresses. The handshake is done here, inside the
//! connection guard, rather than by Pingora's TLS listener: so a connection is counted
//! against the connection limits before its handshake, a handshake that stalls is cut by the
//! request-head deadline (nginx: `client_header_timeout` bounds the handshake too) instead of
//! Pingora's fixed 60 s, and a failed handshake (a scanner, a plain-HTTP client) is one info
//! line, not an error line. The certificate is asked for at every handshake, so the one a
//! SIGHUP loaded is served from the next connection on.

use std::sync::Arc;

use pingora::listeners::ALPN;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate to present now.
type CurrentCertificate = Box<dyn Fn() -> Arc<CertifiedKey> + Send + Sync>;

/// Hands rustls the certificate in force at each handshake.
struct Resolver(CurrentCertificate);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some((self.0)())
    }
}

/// Accepts TLS on a plain TCP stream, offering HTTP/2 by ALPN when asked to.
pub struct TlsTerminator {
    acceptor: Acceptor,
}

impl TlsTerminator {
    /// `certificate` is called at every handshake (it reads the configuration in force).
    pub fn new(
        certificate: impl Fn() -> Arc<CertifiedKey> + Send + Sync + 'static,
        http2: bool,
    ) -> Result<TlsTerminator, String> {
        let mut settings = TlsSettings::intermediate("", "").map_err(|e| e.to_string())?;
        settings.set_cert_resolver(Arc::new(Resolver(Box::new(certificate))));
        settings.set_alpn(if http2 { ALPN::H2H1 } else { ALPN::H1 });
        Ok(TlsTerminator {
            acceptor: settings.build(),
        })
    }

    /// The handshake on a freshly accepted connection; the decrypted stream.
    pub async fn accept(&self, stream: Stream) -> Result<Stream, String> {
        // The listener hands over its TCP streams; anything else is a wiring mistake.
        let tcp = stream
            .into_any()
            .downcast::<L4Stream>()
            .map_err(|_| "not a TCP stream".to_string())?;
        let tls = self
            .acceptor
            .tls_handshake(*tcp)
            .await
            .map_err(|e| e.to_string().trim().to_string())?;
        Ok(Box::new(tls))
    }
}
