//! `POST /v1/chat` request bodies.
//!
//! A hand-written serde visitor rather than a derive, for two reasons: every error names the
//! field it is about (a derive says "invalid type: integer" without saying where), and
//! strings are borrowed from the body buffer unless they contain escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::ApiError;

/// A parsed, validated chat request; strings borrow from the body where they can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest<'a> {
    pub user_id: Cow<'a, str>,
    pub text: Cow<'a, str>,
    pub session_id: Option<Cow<'a, str>>,
    pub channel: Option<Cow<'a, str>>,
}

/// The caps `server.yaml` puts on fields.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_text_chars: usize,
    pub max_user_id_bytes: usize,
}

/// Optional fields are short identifiers.
const MAX_AUX_BYTES: usize = 128;

/// The request's head against the client caps, before anything else looks at it: a request
/// target longer than a header line may be gets 414, a longer header line or more header
/// bytes in all 431 (nginx answers 414 and 400 "Request Header Or Cookie Too Large").
/// A body whose length is given twice (two `Content-Length`s) gets 400, and a transfer coding
/// other than chunked 501, as nginx does: request smuggling lives in such disagreements.
/// (`Content-Length` beside `Transfer-Encoding` never gets here: Pingora drops the length,
/// reads the chunked body and closes the connection after the answer, as RFC 9112 6.3 says.)
pub fn check_head(
    target: &[u8],
    headers: &http::HeaderMap,
    caps: &crate::config::ClientCaps,
) -> Result<(), ApiError> {
    if target.len() > caps.max_header_line_bytes {
        return Err(ApiError::new(
            414,
            "uri_too_long",
            format!(
                "request target is longer than {} bytes",
                caps.max_header_line_bytes
            ),
        ));
    }
    let mut total = target.len();
    for (name, value) in headers {
        let line = name.as_str().len() + value.len();
        if line > caps.max_header_line_bytes {
            return Err(ApiError::new(
                431,
                "header_too_large",
                format!(
                    "header `{name}` is longer than {} bytes",
                    caps.max_header_line_bytes
                ),
            ));
        }
        total += line;
    }
    if total > caps.max_header_bytes {
        return Err(ApiError::new(
            431,
            "headers_too_large",
            format!(
                "headers are larger than {} bytes in all",
                caps.max_header_bytes
            ),
        ));
    }
    check_framing(headers)
}

fn check_framing(headers: &http::HeaderMap) -> Result<(), ApiError> {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    if headers.get_all(CONTENT_LENGTH).iter().count() > 1 {
        return Err(ApiError::bad_request(
            "ambiguous_length",
            "the body's length is given twice (two Content-Length headers)",
        ));
    }
    for value in headers.get_all(TRANSFER_ENCODING) {
        let only_chunked = value
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if !only_chunked {
            return Err(ApiError::new(
                501,
                "unsupported_transfer_encoding",
                "only Transfer-Encoding: chunked is supported",
            ));
        }
    }
    Ok(())
}

/// Parse and validate a request body.
pub fn parse_chat<'a>(body: &'a [u8], limits: Limits) -> Result<ChatRequest<'a>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_utf8",
            format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let req: ChatRequest<'a> = serde_json::from_str(text).map_err(|e| {
        let code = if e.is_data() {
            "invalid_field"
        } else {
            "malformed_json"
        };
        ApiError::bad_request(code, e.to_string())
    })?;
    if req.user_id.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_field",
            "field `user_id` is empty",
        ));
    }
    if req.user_id.len() > limits.max_user_id_bytes {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "field `user_id` is longer than {} bytes",
                limits.max_user_id_bytes
            ),
        ));
    }
    if req.text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_field",
            "field `text` is empty",
        ));
    }
    // Count characters only when the byte length could exceed the cap.
    if req.text.len() > limits.max_text_chars && req.text.chars().count() > limits.max_text_chars {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "field `text` is longer than {} characters",
                limits.max_text_chars
            ),
        ));
    }
    for (name, value) in [("session_id", &req.session_id), ("channel", &req.channel)] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_AUX_BYTES) {
            return Err(ApiError::bad_request(
                "invalid_field",
                format!("field `{name}` is longer than {MAX_AUX_BYTES} bytes"),
            ));
        }
    }
    Ok(req)
}

/// A string borrowed from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for ChatRequest<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChatRequest<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with `user_id` and `text`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut user_id = None;
                let mut text = None;
                let mut session_id = None;
                let mut channel = None;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let slot = match key.0.as_ref() {
                        "user_id" => &mut user_id,
                        "text" => &mut text,
                        "session_id" => &mut session_id,
                        "channel" => &mut channel,
                        // Unknown fields are ignored, so clients can send more than we read.
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format_args!(
                            "field `{}` appears twice",
                            key.0
                        )));
                    }
                    let value = map.next_value::<Str<'de>>().map_err(|_| {
                        de::Error::custom(format_args!("field `{}` must be a string", key.0))
                    })?;
                    *slot = Some(value.0);
                }
                Ok(ChatRequest {
                    user_id: user_id
                        .ok_or_else(|| de::Error::custom("field `user_id` is missing"))?,
                    text: text.ok_or_else(|| de::Error::custom("field `text` is missing"))?,
                    session_id,
                    channel,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_text_chars: 5,
        max_user_id_bytes: 8,
    };

    fn err(body: &[u8]) -> ApiError {
        parse_chat(body, LIMITS).unwrap_err()
    }

    #[test]
    fn head_caps_name_what_is_too_large() {
        let caps = crate::config::ClientCaps {
            max_header_line_bytes: 16,
            max_header_bytes: 40,
            keepalive_timeout_secs: 75,
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(10),
            send_timeout: std::time::Duration::from_secs(10),
            max_connections: 0,
            max_connections_per_client: 0,
        };
        let mut h = http::HeaderMap::new();
        h.insert("host", http::HeaderValue::from_static("t"));
        assert!(check_head(b"/v1/chat", &h, &caps).is_ok());
        assert_eq!(check_head(&[b'a'; 17], &h, &caps).unwrap_err().status, 414);
        h.insert("x-long", http::HeaderValue::from_static("0123456789abcdef"));
        assert_eq!(
            check_head(b"/", &h, &caps).unwrap_err().code,
            "header_too_large"
        );
        h.remove("x-long");
        for name in ["x-a", "x-b", "x-c", "x-d"] {
            h.insert(name, http::HeaderValue::from_static("0123456"));
        }
        assert_eq!(
            check_head(b"/", &h, &caps).unwrap_err().code,
            "headers_too_large"
        );
    }

    #[test]
    fn two_lengths_or_an_unknown_coding_are_refused() {
        use http::HeaderValue;
        use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
        let code = |pairs: &[(http::HeaderName, &'static str)]| {
            let mut h = http::HeaderMap::new();
            for (name, value) in pairs {
                h.append(name, HeaderValue::from_static(value));
            }
            check_framing(&h).err().map(|e| (e.status, e.code))
        };
        assert_eq!(code(&[(CONTENT_LENGTH, "4")]), None);
        assert_eq!(code(&[(TRANSFER_ENCODING, "Chunked ")]), None);
        let ambiguous = Some((400, "ambiguous_length"));
        assert_eq!(
            code(&[(CONTENT_LENGTH, "4"), (CONTENT_LENGTH, "4")]),
            ambiguous
        );
        let unsupported = Some((501, "unsupported_transfer_encoding"));
        assert_eq!(code(&[(TRANSFER_ENCODING, "gzip, chunked")]), unsupported);
        assert_eq!(
            code(&[
                (TRANSFER_ENCODING, "chunked"),
                (TRANSFER_ENCODING, "chunked")
            ]),
            None
        );
        assert_eq!(code(&[(TRANSFER_ENCODING, "identity")]), unsupported);
    }

    #[test]
    fn parses_and_borrows() {
        let body =
            br#"{"user_id":"u1","text":"\u4eb2\u5728\u5417","channel":"app","extra":[1,{"a":2}]}"#;
        let r = parse_chat(body, LIMITS).unwrap();
        assert!(matches!(r.user_id, Cow::Borrowed("u1")));
        assert_eq!(r.text, "亲在吗");
        assert_eq!(r.channel.as_deref(), Some("app"));
        assert_eq!(r.session_id, None);
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(br#"{"text":"hi"}"#);
        assert_eq!((e.status, e.code), (400, "invalid_field"));
        assert!(e.message.contains("`user_id` is missing"), "{}", e.message);
        let e = err(br#"{"user_id":7,"text":"hi"}"#);
        assert!(
            e.message.contains("`user_id` must be a string"),
            "{}",
            e.message
        );
        let e = err(br#"{"user_id":"u","text":null}"#);
        assert!(
            e.message.contains("`text` must be a string"),
            "{}",
            e.message
        );
        let e = err(br#"{"user_id":"u","user_id":"v","text":"x"}"#);
        assert!(e.message.contains("appears twice"), "{}", e.message);
        let e = err(br#"{"user_id":"  ","text":"x"}"#);
        assert!(e.message.contains("`user_id` is empty"), "{}", e.message);
        let e = err(br#"{"user_id":"u","text":""}"#);
        assert!(e.message.contains("`text` is empty"), "{}", e.message);
    }

    #[test]
    fn caps_and_encodings() {
        let e = err(r#"{"user_id":"u","text":"一二三四五六"}"#.as_bytes());
        assert!(
            e.message.contains("longer than 5 characters"),
            "{}",
            e.message
        );
        assert!(parse_chat(r#"{"user_id":"u","text":"一二三四五"}"#.as_bytes(), LIMITS).is_ok());
        let e = err(br#"{"user_id":"123456789","text":"x"}"#);
        assert!(e.message.contains("`user_id` is longer than 8 bytes"));
        let e = err(b"{\"user_id\":\"u\",\"text\":\"\xff\xfe\"}");
        assert_eq!(e.code, "invalid_utf8");
        let e = err(br#"{"user_id":"u","text":"x""#);
        assert_eq!(e.code, "malformed_json");
        let e = err(br#"[1,2]"#);
        assert_eq!(e.code, "invalid_field");
        let e = err(b"");
        assert_eq!(e.code, "malformed_json");
    }
}
