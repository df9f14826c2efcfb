//! The network part of `/api/settings` (issue 17, item 8): the state the
//! board's script keeps (`network` in `GET /api/settings`, from
//! `crate::system::network`) and `POST /api/settings/network/confirm`
//! `{"id"?}`, which keeps a new static address by writing its id to
//! `<data_dir>/network-confirmed` before the script's deadline. Both read or
//! write files, so both are disk-thread jobs.

use super::super::super::WebContext;
use super::super::data::disk_refused;
use super::super::{error, json, parse_json, rejected, Resp};
use crate::settings::View;
use crate::system::network::{self, ConfirmError, Status};
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `GET /api/settings`: the settings view and the network state.
#[derive(Serialize)]
pub(super) struct WithNetwork {
    #[serde(flatten)]
    view: View,
    network: Status,
}

/// `view` with the network state now (run on the disk thread).
pub(super) fn with_status(view: View, data_dir: &std::path::Path) -> WithNetwork {
    WithNetwork {
        view,
        network: network::status(&network::state_path(), data_dir, unix_now()),
    }
}

/// Unix seconds now (0 before 1970: a clock that far off confirms nothing).
fn unix_now() -> u64 {
    u64::try_from(crate::clock::now_unix_ms() / 1000).unwrap_or(0)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    /// The id the page showed; another one waiting is refused.
    #[serde(default)]
    id: Option<String>,
}

/// `POST /api/settings/network/confirm` (admin and CSRF checked by the
/// caller): 200 `{"confirmed": id}`, or 409 saying why not.
pub(super) async fn confirm(ctx: &Arc<WebContext>, body: &[u8]) -> Resp {
    let b: ConfirmBody = if body.iter().all(u8::is_ascii_whitespace) {
        ConfirmBody::default()
    } else {
        match parse_json(body) {
            Ok(b) => b,
            Err(r) => return rejected(r),
        }
    };
    let data_dir = ctx.data_dir.clone();
    let job = move || network::confirm(&network::state_path(), &data_dir, b.id.as_deref());
    let answer = match ctx.disk.try_run(job) {
        Ok(answer) => answer.await,
        Err(e) => Err(e),
    };
    #[derive(Serialize)]
    struct Confirmed {
        confirmed: String,
    }
    match answer {
        Err(e) => disk_refused(e),
        Ok(Ok(id)) => json(StatusCode::OK, &Confirmed { confirmed: id }),
        Ok(Err(e @ ConfirmError::Io { .. })) => {
            log::error!("network confirmation: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::CONFLICT, &e.to_string()),
    }
}
