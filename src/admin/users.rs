//! `GET /admin/users/{user_id}/latest?intent=<id>`: the user's last turn of one intent, from
//! the dialogue store's per-user latest-intent index (one lookup on the user's own slot).

use http::{Response, StatusCode};
use serde::Serialize;

use super::{error_response, json_response};
use crate::api::ApiError;
use crate::dialog::{Dialog, LatestTurn};
use crate::intent::Intent;

const PREFIX: &str = "/admin/users/";
const SUFFIX: &str = "/latest";

/// The user id of a `/admin/users/{id}/latest` path (percent-decoded), if it is one.
pub fn route(path: &str) -> Option<Result<String, String>> {
    let id = path.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    Some(
        percent_encoding::percent_decode_str(id)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| "user id is not UTF-8 once percent-decoded".to_owned())
            .and_then(|s| {
                if s.is_empty() || s.contains('/') {
                    Err("user id must be one non-empty path segment".to_owned())
                } else {
                    Ok(s)
                }
            }),
    )
}

fn intent_param(query: Option<&str>) -> Result<Intent, String> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("intent="))
        .ok_or("query parameter `intent` is required")?;
    value.parse::<Intent>().map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct Latest<'a> {
    user_id: &'a str,
    intent: &'a str,
    /// RFC 3339.
    at: String,
    order: Option<&'a str>,
    turn: u32,
}

pub async fn latest(
    dialog: &Dialog,
    user: Result<String, String>,
    query: Option<&str>,
) -> Response<Vec<u8>> {
    let user = match user {
        Ok(u) => u,
        Err(e) => return error_response(&ApiError::bad_request("invalid_user_id", e)),
    };
    let intent = match intent_param(query) {
        Ok(i) => i,
        Err(e) => return error_response(&ApiError::bad_request("invalid_intent", e)),
    };
    match dialog.latest(&user, intent).await {
        Ok(Some(l)) => json_response(StatusCode::OK, &render(&user, &l)),
        Ok(None) => error_response(&ApiError::new(
            404,
            "not_found",
            format!("no {intent} turn of this user in the last ttl"),
        )),
        Err(e) => error_response(&ApiError::new(503, "store_unavailable", e.to_string())),
    }
}

fn render<'a>(user: &'a str, l: &'a LatestTurn) -> Latest<'a> {
    let at = jiff::Timestamp::from_second(l.at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    Latest {
        user_id: user,
        intent: l.intent.as_str(),
        at,
        order: l.order.as_deref(),
        turn: l.turn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_parameters() {
        assert_eq!(route("/admin/users/u1/latest"), Some(Ok("u1".into())));
        assert_eq!(
            route("/admin/users/%E5%B0%8F%E7%8E%8B/latest"),
            Some(Ok("小王".into()))
        );
        assert!(matches!(route("/admin/users//latest"), Some(Err(_))));
        assert!(matches!(route("/admin/users/a%2Fb/latest"), Some(Err(_))));
        assert_eq!(route("/admin/users/u1"), None);
        assert_eq!(
            intent_param(Some("intent=refund_apply")),
            Ok(Intent::RefundApply)
        );
        assert!(intent_param(Some("intent=refund")).is_err());
        assert!(intent_param(None).is_err());
    }
}
