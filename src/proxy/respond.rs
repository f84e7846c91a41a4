//! Writing JSON answers from inside a Pingora filter, and the one table that maps errors to
//! HTTP statuses.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{ErrorSource, ErrorType, Result};

use crate::api::ApiError;
use crate::edge::DenyReason;
use crate::limits::Limited;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Write a complete JSON response.
pub async fn json(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    extra: Option<(http::HeaderName, HeaderValue)>,
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header(CONTENT_TYPE, JSON)?;
    header.insert_header(CONTENT_LENGTH, body.len())?;
    if let Some((name, value)) = extra {
        header.insert_header(name, value)?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

/// Write an error answer (`{"error":{"code","message"}}`), with `Retry-After` for 429s and
/// `Allow` for 405s; the connection closes after it when the request's framing cannot be
/// trusted ([`ApiError::closes_connection`]).
pub async fn error(session: &mut Session, e: &ApiError) -> Result<()> {
    if e.closes_connection() {
        session.set_keepalive(None);
    }
    let extra = match (e.status, e.retry_after) {
        (429, Some(secs)) => Some((RETRY_AFTER, HeaderValue::from(secs))),
        (405, _) => Some((http::header::ALLOW, HeaderValue::from_static("POST"))),
        _ => None,
    };
    json(session, e.status, e.to_json(), extra).await
}

impl From<DenyReason> for ApiError {
    fn from(r: DenyReason) -> ApiError {
        ApiError::new(
            403,
            "forbidden",
            format!("request blocked by edge rules ({})", r.as_str()),
        )
    }
}

impl From<Limited> for ApiError {
    fn from(l: Limited) -> ApiError {
        let mut e = ApiError::new(
            429,
            "rate_limited",
            format!("too many requests ({} limit); retry later", l.kind.as_str()),
        );
        e.retry_after = Some(l.retry_after_secs());
        e
    }
}

/// The status and error code for a failed proxied request.
pub fn proxy_failure(e: &pingora::Error) -> ApiError {
    if malformed_body(e) {
        return malformed_body_error();
    }
    match e.etype() {
        ErrorType::HTTPStatus(404) => ApiError::new(404, "not_found", "no route for this path"),
        ErrorType::HTTPStatus(code) if *code >= 400 => {
            ApiError::new(*code, "bad_gateway", "no healthy upstream")
        }
        ErrorType::ReadTimedout if e.esource() == &ErrorSource::Downstream => {
            request_timeout_error()
        }
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            ApiError::new(504, "gateway_timeout", "upstream timed out")
        }
        _ => match e.esource() {
            ErrorSource::Upstream => ApiError::new(502, "bad_gateway", "upstream failed"),
            ErrorSource::Downstream => ApiError::new(400, "bad_request", "bad request"),
            ErrorSource::Internal | ErrorSource::Unset => {
                ApiError::new(500, "internal", "internal error")
            }
        },
    }
}

/// Whether Pingora failed to read a request body because the client sent it badly framed
/// (a bad chunk size, a bad trailer end, fewer bytes than declared). Pingora's body reader
/// names these with custom error types that it does not export, so they are matched by name.
pub fn malformed_body(e: &pingora::Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::Custom("InvalidChunk" | "InvalidTrailerEnd" | "PrematureBodyEnd")
    )
}

/// The answer to a request body that stopped arriving for longer than `client.body_timeout`.
pub fn request_timeout_error() -> ApiError {
    ApiError::new(
        408,
        "request_timeout",
        "the request body stopped arriving (client.body_timeout)",
    )
}

/// The answer to a malformed body: 400, and the connection closes (see `ApiError::closes_connection`).
pub fn malformed_body_error() -> ApiError {
    ApiError::bad_request(
        "malformed_body",
        "the request body is badly framed (chunked encoding)",
    )
}
