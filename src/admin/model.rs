//! `/admin/model`: what the model stage serves, and the rollout steps an operator takes
//! without editing `model.yaml` (see [`crate::rollout`] for how they sit over the file):
//!
//! - `GET /admin/model`: the rollout served, the file's when steps serve another one, and the
//!   deployment (as in `/healthz`);
//! - `POST /admin/model/gray` `{"percent": N}`: the candidate serves N% of users;
//! - `POST /admin/model/promote`: the candidate serves everyone, the active version stays
//!   loaded as the candidate at 0%;
//! - `POST /admin/model/rollback`: the rollout before the last step.
//!
//! A step answers at once with the new rollout; versions not loaded yet load and warm in the
//! background (`/healthz` `model` shows when they serve), as on a reload.

use http::{Method, Response, StatusCode};
use serde::Deserialize;

use super::{ModelStatus, error_response, json_response};
use crate::api::ApiError;
use crate::rollout::{Rollout, Step};
use crate::state::{Reloader, StepFailure};

const PREFIX: &str = "/admin/model";

/// The routes below `/admin/model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Status,
    Gray,
    Promote,
    Rollback,
}

pub fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix(PREFIX)?;
    Some(match rest {
        "" => Route::Status,
        "/gray" => Route::Gray,
        "/promote" => Route::Promote,
        "/rollback" => Route::Rollback,
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrayBody {
    percent: u8,
}

pub fn serve(reloader: &Reloader, route: Route, method: &Method, body: &[u8]) -> Response<Vec<u8>> {
    let want = if route == Route::Status {
        Method::GET
    } else {
        Method::POST
    };
    if method != want {
        return error_response(&ApiError::new(
            405,
            "method_not_allowed",
            "GET /admin/model, POST /admin/model/{promote,gray,rollback}",
        ));
    }
    let step = match route {
        Route::Status => return status(reloader),
        Route::Promote => Step::Promote,
        Route::Rollback => Step::Rollback,
        Route::Gray => match serde_json::from_slice::<GrayBody>(body) {
            Ok(b) => Step::Gray(b.percent),
            Err(e) => {
                return error_response(&ApiError::bad_request(
                    "invalid_field",
                    format!("expected {{\"percent\": 0..100}}: {e}"),
                ));
            }
        },
    };
    match reloader.rollout_step(step) {
        Ok((generation, rollout)) => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "ok": true,
                "generation": generation,
                "rollout": rollout,
                "note": "versions not loaded yet load in the background: GET /healthz shows when they serve; model.yaml is unchanged",
            }),
        ),
        Err(StepFailure::Refused(e)) => {
            error_response(&ApiError::new(409, "step_refused", e.to_string()))
        }
        Err(StepFailure::Reload(errors)) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({ "ok": false, "errors": errors }),
        ),
    }
}

fn status(reloader: &Reloader) -> Response<Vec<u8>> {
    let serving = Rollout::of(&reloader.current.load().config.model);
    let steps = reloader.rollout_steps();
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "rollout": serving,
            "model_yaml": steps.as_ref().map(|(file, _)| file),
            "admin_steps": steps.as_ref().map_or(0, |(_, n)| *n),
            "deployment": ModelStatus::of(&reloader.model),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_below_admin_model() {
        assert_eq!(route("/admin/model"), Some(Route::Status));
        assert_eq!(route("/admin/model/gray"), Some(Route::Gray));
        assert_eq!(route("/admin/model/promote"), Some(Route::Promote));
        assert_eq!(route("/admin/model/rollback"), Some(Route::Rollback));
        assert_eq!(route("/admin/model/other"), None);
        assert_eq!(route("/admin/models"), None);
        assert_eq!(route("/admin/users/u/latest"), None);
    }
}
