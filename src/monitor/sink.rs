//! Where an embedding service hears about alerts: the [`AlertSink`]s, called on a thread of
//! their own so a sink that panics or blocks never stops sampling.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};

use super::{ResourceAlert, Shared};

/// Where an embedding service hears about alerts. Called on the monitor's notification
/// thread, in order; a panic is caught and logged, and a slow sink delays only other sinks.
pub trait AlertSink: Send + Sync + 'static {
    /// An alert was raised.
    fn raised(&self, alert: &ResourceAlert);
    /// An alert was resolved.
    fn resolved(&self, alert: &ResourceAlert) {
        let _ = alert;
    }
}

/// What the actor hands the sinks' thread.
pub(super) enum Notice {
    Raised(Arc<ResourceAlert>),
    Resolved(Arc<ResourceAlert>),
}

/// Calls the sinks for each notice, catching panics, until the monitor is gone.
pub(super) fn notify(shared: &Shared, queue: &mpsc::Receiver<Notice>) {
    while let Ok(notice) = queue.recv() {
        for sink in shared.sinks() {
            let outcome = catch_unwind(AssertUnwindSafe(|| match &notice {
                Notice::Raised(alert) => sink.raised(alert),
                Notice::Resolved(alert) => sink.resolved(alert),
            }));
            if outcome.is_err() {
                tracing::error!("an alert sink panicked; the monitor goes on");
            }
        }
    }
}
