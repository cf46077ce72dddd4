//! Answering lookups, and waking a dormant session for an order: a session of logical
//! agents has no actor while nobody orders it (`Opened::Dormant`); the first lookup for an
//! order spawns one here, in the registry's loop — its start is a few microseconds (the
//! group is running already, nothing is built or started) and doing it here orders it with
//! the stop (`StopAll` sees every actor a wake made) and with the actor's supervision (the
//! registry knows the actor before any of its events).

use ractor::ActorRef;
use uuid::Uuid;

use crate::session::actor::Opening;

use super::{spawn_actor, Found, RegistryMsg, RegistryState};

impl RegistryState {
    /// Answers the lookups parked for `id` with the session as it is now.
    pub(super) async fn answer_parked(&mut self, myself: &ActorRef<RegistryMsg>, id: Uuid) {
        for (reply, wake) in self.unrestored.remove(&id).unwrap_or_default() {
            let found = self.found(myself, id, wake).await;
            let _ = reply.send(found);
        }
    }

    /// A session as a lookup finds it; for an order (`wake`), a dormant session has its
    /// actor by then (unless the server stops, or the spawn failed: then the caller finds
    /// it still dormant, see `SessionRegistry::awake`).
    pub(super) async fn found(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        id: Uuid,
        wake: bool,
    ) -> Option<Found> {
        let entry = self.sessions.get(&id)?;
        let found = (entry.record.clone(), entry.live.clone());
        // Only a dormant session is woken: one whose actor died (its slot empty before the
        // registry hears of the death) is being rebuilt, and must not get a second actor.
        if let (true, Some(live)) = (wake && !self.stopping, &found.1) {
            if live.shared.dormant() {
                live.shared.set_dormant(false);
                match spawn_actor(&self.deps, myself, &live.shared, Opening::Wake).await {
                    Ok(actor) => {
                        self.by_actor.insert(actor.get_id(), id);
                    }
                    Err(err) => {
                        // Still dormant, as it was: readable, and the next order tries again.
                        live.shared.set_dormant(true);
                        tracing::error!(session = %id, "cannot wake the session's actor: {err}");
                    }
                }
            }
        }
        Some(found)
    }
}
