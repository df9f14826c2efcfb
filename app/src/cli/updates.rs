//! The updater wired to the running box: the health its gate judges,
//! gathered once a second from the registry, the store and the web server.
//!
//! Here rather than in `update` because only the top knows all three; the
//! updater is told what it sees and never looks itself.

use crate::disk::Disk;
use crate::metrics::{CameraState, Registry};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::update::probation::Health;
use crate::update::Updater;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads the slots, then feeds the gate until this boot has its verdict.
pub async fn gate(
    updater: Arc<Updater>,
    registry: Arc<Registry>,
    store: Option<Arc<Store>>,
    disk: Arc<Disk>,
    web: SocketAddr,
    started: Instant,
    mut shutdown: Shutdown,
) {
    let configured = registry.cameras.iter().map(|c| c.name.clone()).collect();
    updater.start(configured, started).await;
    let mut health = Health::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while updater.judging() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.requested() => return,
        }
        health.streaming.clear();
        health.streaming.extend(
            registry
                .cameras
                .iter()
                .filter(|c| c.status().state == CameraState::Streaming)
                .map(|c| c.name.clone()),
        );
        health.detector_ran = registry.cameras.iter().any(|c| c.frames_detected.get() > 0);
        if !health.store_committed {
            health.store_committed = store_commits(store.as_ref(), &disk).await;
        }
        if !health.web_answered {
            health.web_answered = web_answers(web).await;
        }
        updater.judge(&health, Instant::now()).await;
    }
}

/// One write transaction through the store (an empty batch: retention
/// runs, nothing is added), on the disk thread like every store call.
async fn store_commits(store: Option<&Arc<Store>>, disk: &Disk) -> bool {
    let Some(store) = store.cloned() else {
        return false;
    };
    let now_ms = crate::clock::now_unix_ms();
    let committed = disk
        .run(move || {
            let mut batch = crate::store::Batch::with_capacity(0);
            store.commit(&mut batch, now_ms)
        })
        .await;
    match committed {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            log::warn!("update: the store did not commit: {e}");
            false
        }
        Err(_) => false,
    }
}

/// Whether the web server answers `GET /api/health` with 200 on its own
/// address, as a browser would reach it.
async fn web_answers(addr: SocketAddr) -> bool {
    let addr = match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, a.port()))
        }
        a => a,
    };
    let ask = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/api/health")
            .header(hyper::header::HOST, addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        let resp = send.send_request(req).await.ok()?;
        Some(resp.status() == hyper::StatusCode::OK)
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
