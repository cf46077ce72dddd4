//! The task that counts hook events: every `SessionEvent::Hook` on the bus goes to the
//! ledger and its counts to storage; a purged session's counts are forgotten.

use std::sync::Arc;

use crate::session::{Published, SessionEvent};

use super::activity::Delta;
use super::{hour_of, store, Shared};

/// Counts every hook event published on the bus into the ledger and storage; forgets a
/// purged session. Ends when the bus closes (or the monitor stops it).
pub(super) async fn count_hooks(
    mut events: tokio::sync::broadcast::Receiver<Arc<Published>>,
    shared: Arc<Shared>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let published = match events.recv().await {
            Ok(published) => published,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the monitor fell behind the bus; hook events may be uncounted"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match &published.event {
            SessionEvent::Hook {
                session,
                name,
                payload,
            } => {
                let at = published.timestamp;
                let delta: Delta = shared
                    .ledger()
                    .record(*session, name, payload, at, |path| path.exists());
                shared.changed();
                if delta.activity.is_empty() {
                    continue;
                }
                if let Err(error) =
                    store::add_activity(&shared.storage, *session, hour_of(at), delta).await
                {
                    tracing::warn!(%error, "hook counts not stored");
                }
            }
            SessionEvent::Purged(session) => {
                shared.ledger().forget(*session);
                shared.changed();
                if let Err(error) = store::forget_activity(&shared.storage, *session).await {
                    tracing::warn!(%error, "hook counts of a purged session not deleted");
                }
            }
            _ => {}
        }
    }
}
