//! `POST /api/settings/cameras/test` `{"camera": {...}}`: the cameras
//! form's **Test** button (admin session and CSRF token, checked by the
//! settings routes before this runs).
//!
//! The camera is one entry of the cameras form (`name`, `url`, `username`,
//! `password`, `max_resolution`, ...), written into the current file as a
//! save would write it, so a password sent as `***` is the saved camera's
//! of the same name (or of `was`), and validated by the file's parser; the
//! camera it describes is opened once ([`crate::camera_probe`]), nothing is
//! saved. One test at a time: a second one meanwhile is 409 `busy`. The
//! answer is 200 with the facts and a picture (`"ok": true`), 502 with what
//! the camera did (`unauthorized`, `timeout`, `unreachable`, `refused`,
//! `stream_error`, `unsupported_codec`, `over_max_resolution`,
//! `key_frame_too_large`, `bad_stream`) or 422 for the form (`bad_url`,
//! `invalid`, `not_supported`), always `{"ok": false, "error": kind,
//! "message"}`. Reading the file and decoding the picture are disk-thread
//! jobs; the RTSP session runs in this request's task, bounded by the
//! camera's `stall_timeout`. The answer is at most
//! [`crate::camera_probe::ANSWER_CAP`] bytes.

use super::super::WebContext;
use super::data::disk_refused;
use super::{error, json, parse_json, rejected, set, Resp};
use crate::camera_probe::{facts, picture, session, Answer, ProbeError};
use crate::settings::{cameras::CameraForm, Problem, Service};
use hyper::{header, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    camera: CameraForm,
}

/// Tests the camera in `body`.
pub(super) async fn handle(ctx: &WebContext, service: Arc<Service>, body: &[u8]) -> Resp {
    let b: TestBody = match parse_json(body) {
        Ok(b) => b,
        Err(r) => return rejected(r),
    };
    let Ok(_one) = ctx.camera_test.try_acquire() else {
        let mut r = reply(&ProbeError::Busy);
        set(&mut r, header::RETRY_AFTER, "1");
        return r;
    };
    let resolved = match ctx.disk.try_run(move || service.camera_for_test(&b.camera)) {
        Ok(answer) => answer.await,
        Err(e) => Err(e),
    };
    let camera = match resolved {
        Err(e) => return disk_refused(e),
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Ok(Ok(Err(problems))) => return reply(&form_error(&problems)),
        Ok(Ok(Ok(camera))) => camera,
    };
    let key = match session::first_key_frame(&camera).await {
        Ok(key) => key,
        Err(e) => return reply(&e),
    };
    let facts = match facts(key.codec, &key.data, (camera.max_width, camera.max_height)) {
        Ok(f) => f,
        Err(e) => return reply(&e),
    };
    let picture = match ctx.disk.try_run(move || picture::render(&key, &facts)) {
        Ok(answer) => answer
            .await
            .unwrap_or_else(|e| Err(format!("no picture: {e}"))),
        Err(e) => Err(format!("no picture: {e}; try again")),
    };
    json(StatusCode::OK, &Answer::streams(&facts, picture))
}

/// The first problem of the form, as the probe's error: the URL's own, or
/// another field's with its key.
fn form_error(problems: &[Problem]) -> ProbeError {
    let Some(p) = problems.first() else {
        return ProbeError::Invalid("the camera is not valid".to_owned());
    };
    if p.key.ends_with(".url") {
        ProbeError::BadUrl(p.message.clone())
    } else if p.key.is_empty() {
        ProbeError::Invalid(p.message.clone())
    } else {
        ProbeError::Invalid(format!("{}: {}", p.key, p.message))
    }
}

/// The failed answer with its HTTP status: the form's mistakes 422, a busy
/// test 409, what the camera did 502.
fn reply(e: &ProbeError) -> Resp {
    let status = match e {
        ProbeError::BadUrl(_) | ProbeError::Invalid(_) | ProbeError::NotSupported(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ProbeError::Busy => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    };
    json(status, &Answer::failed(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(key: &str, message: &str) -> Problem {
        Problem {
            key: key.into(),
            line: Some(3),
            message: message.into(),
        }
    }

    #[test]
    fn form_problems_and_statuses_map_to_kinds() {
        let url = form_error(&[problem("camera[0].url", "source \"ftp://x\": unsupported")]);
        assert_eq!(url.kind(), "bad_url");
        assert_eq!(url.to_string(), "source \"ftp://x\": unsupported");
        let res = form_error(&[problem("camera[0].max_resolution", "expected WxH")]);
        assert_eq!(res.to_string(), "camera[0].max_resolution: expected WxH");
        assert_eq!(res.kind(), "invalid");
        assert_eq!(reply(&url).status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply(&ProbeError::Busy).status(), StatusCode::CONFLICT);
        let timeout = ProbeError::Timeout {
            step: "PLAY",
            after: std::time::Duration::from_secs(10),
        };
        assert_eq!(reply(&timeout).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            reply(&ProbeError::NotSupported("a V4L2 device")).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
