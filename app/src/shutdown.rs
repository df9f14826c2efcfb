//! One shutdown signal for every thread and task.
//!
//! Threads poll [`Shutdown::is_requested`] between bounded waits; async tasks
//! race their awaits against [`Shutdown::requested`]. Cloning a handle
//! allocates nothing, so handing it to a reconnecting source is free.

use tokio::sync::watch;

/// A cloneable view of the process's shutdown flag.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The one place shutdown is requested from.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A new trigger and the handle that observes it.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Asks every holder of a [`Shutdown`] to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Another observer of this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// Whether shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once shutdown is requested (or the trigger is gone).
    pub async fn requested(&mut self) {
        // An error means the trigger was dropped, which also means stop.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}
