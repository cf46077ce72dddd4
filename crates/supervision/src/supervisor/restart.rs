//! Restarts: judging an exit with the policy, backoff timers, group restarts
//! (`rest_for_one`, `one_for_all`) and restarts by hand.

use std::time::{Duration, Instant, SystemTime};

use ractor::{ActorCell, ActorRef};

use super::{AfterStop, Msg, SupervisorMsg, SupervisorState, MAX_EARLY_EXITS};
use crate::error::{human, ChildError};
use crate::event::{ChildState, SupervisorEvent};
use crate::policy::{decide, Decision, Exit, Strategy};
use crate::SupervisionError;

impl SupervisorState {
    /// An actor linked to the supervisor ended.
    pub(super) fn on_actor_exit(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        cell: &ActorCell,
        exit: Exit,
    ) {
        let actor = cell.get_id();
        let Some(i) = self.by_actor.remove(&actor) else {
            if !self.discarded.remove(&actor) {
                if self.early_exits.len() >= MAX_EARLY_EXITS {
                    tracing::warn!(
                        "forgetting {} exits of unknown actors",
                        self.early_exits.len()
                    );
                    self.early_exits.clear();
                }
                self.early_exits.insert(actor, exit);
            }
            return;
        };
        self.children[i].cell = None;
        match self.children[i].state {
            ChildState::Stopping => self.finish_stop(myself, i),
            ChildState::Starting | ChildState::Running => {
                let exit = match self.children[i].failure.take() {
                    Some(failure) => Exit::Abnormal(failure),
                    None => exit,
                };
                self.on_exit(myself, i, exit);
            }
            other => {
                tracing::warn!(child = %self.children[i].spec.id, state = %other, "exit of a child that was not up")
            }
        }
    }

    /// The task of a task child ended; `generation` says which incarnation it was.
    pub(super) fn on_task_exit(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
        generation: u64,
        exit: Exit,
    ) {
        let Some(&i) = self.index.get(id) else { return };
        let child = &mut self.children[i];
        if child.generation != generation || child.task.is_none() {
            return;
        }
        child.task = None;
        match child.state {
            ChildState::Stopping => self.finish_stop(myself, i),
            ChildState::Starting | ChildState::Running => {
                let exit = match child.failure.take() {
                    Some(failure) => Exit::Abnormal(failure),
                    None => exit,
                };
                self.on_exit(myself, i, exit);
            }
            other => {
                tracing::warn!(child = %child.spec.id, state = %other, "end of a task that was not up")
            }
        }
    }

    /// Judges an unplanned exit of child `i` and acts on the decision.
    pub(super) fn on_exit(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize, exit: Exit) {
        let now = Instant::now();
        let child = &mut self.children[i];
        // The incarnation is gone: a kill timer armed for it (its readiness failed) is moot.
        child.kill_timer = None;
        child.history.mark_down();
        child.last_exit = Some(Box::new((exit.clone(), SystemTime::now())));
        let reason = exit.error().map(ChildError::to_string);
        if !child.wanted || self.stop_all.is_some() || self.escalated.is_some() {
            self.transition(i, ChildState::Stopped, reason, None);
            self.advance_stop_all(myself);
            return;
        }
        let policy = child.spec.policy;
        match decide(&policy, &child.history, &exit, now) {
            Decision::Restart { after } => {
                child.history.record_restart(&policy, now);
                let generation = self.generation();
                self.children[i].generation = generation;
                self.transition(i, ChildState::Backoff, reason, Some(after));
                if !self.hold_for_group(i, after) {
                    self.schedule_restart(myself, i, after);
                }
            }
            Decision::Stop => {
                let to = match exit {
                    Exit::Normal => ChildState::Stopped,
                    Exit::Abnormal(_) => ChildState::Failed,
                };
                self.transition(i, to, reason, None);
            }
            Decision::GiveUp => {
                let window = policy.intensity.window;
                let why = format!(
                    "gave up after {} restarts within {}: {}",
                    child.history.restarts_within(window, now),
                    human(window),
                    reason.as_deref().unwrap_or("normal exit")
                );
                self.transition(i, ChildState::Failed, Some(why), None);
            }
            Decision::Escalate => {
                let why = reason.unwrap_or_else(|| "normal exit".to_string());
                self.transition(i, ChildState::Failed, Some(why.clone()), None);
                self.events.publish(SupervisorEvent::Escalated {
                    at: SystemTime::now(),
                    child: self.children[i].spec.id.clone(),
                    reason: why.clone(),
                });
                self.escalated = Some(format!(
                    "child `{}` escalated: {why}",
                    self.children[i].spec.id
                ));
                self.begin_stop_all(myself, None);
            }
        }
    }

    /// Starts child `i` (in backoff) again after `after`: at once, or by timer.
    pub(super) fn schedule_restart(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        i: usize,
        after: Duration,
    ) {
        if after.is_zero() {
            self.end_backoff(myself, i);
            return;
        }
        let id = self.children[i].spec.id.clone();
        let generation = self.children[i].generation;
        myself.send_after(after, move || {
            SupervisorMsg(Msg::BackoffElapsed {
                child: id,
                generation,
            })
        });
    }

    /// Under `rest_for_one` / `one_for_all`, takes the siblings that restart with crashed
    /// child `i` into the group restart, and holds `i`'s own restart until the group is
    /// down. Returns whether it did (false: restart `i` on its own).
    pub(super) fn hold_for_group(&mut self, i: usize, after: Duration) -> bool {
        let position = self.graph.position(i);
        let affected: Vec<usize> = match self.strategy {
            Strategy::OneForOne => return false,
            Strategy::RestForOne => (0..self.children.len())
                .filter(|&j| self.graph.position(j) > position)
                .collect(),
            Strategy::OneForAll => (0..self.children.len()).filter(|&j| j != i).collect(),
        };
        // Every sibling in scope that is wanted up joins, whatever it is doing: one left in
        // backoff or pending could start while the group is going down, under a dependency
        // about to be stopped.
        let affected: Vec<usize> = affected
            .into_iter()
            .filter(|&j| {
                let c = &self.children[j];
                c.wanted && !matches!(c.state, ChildState::Stopped | ChildState::Failed)
            })
            .collect();
        if affected.is_empty() && self.group.is_none() {
            return false;
        }
        let mut group = self.group.take().unwrap_or_default();
        for j in affected {
            // Unwanted, it stays down when stopped; the group wants it back when done.
            self.set_wanted(j, false);
            if self.children[j].state == ChildState::Backoff {
                // Its own restart is replaced by the group's; the pending timer goes stale.
                let generation = self.generation();
                self.children[j].generation = generation;
                self.transition(j, ChildState::Stopped, None, None);
            }
            group.members.push(self.children[j].spec.id.clone());
        }
        group
            .crashed
            .push((self.children[i].spec.id.clone(), after));
        self.group = Some(group);
        self.groups_formed += 1;
        true
    }

    /// Stops the group's members top layer first; once all are down, wants them up again
    /// and lets the crashed children's backoff begin.
    pub(super) fn advance_group(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let members: Vec<usize> = loop {
            let Some(group) = &self.group else { return };
            let members: Vec<usize> = group
                .members
                .iter()
                .filter_map(|id| self.index.get(id).copied())
                .collect();
            if members
                .iter()
                .any(|&j| self.children[j].state == ChildState::Stopping)
            {
                return;
            }
            let up: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&j| {
                    matches!(
                        self.children[j].state,
                        ChildState::Starting | ChildState::Running
                    )
                })
                .collect();
            let Some(top) = up.iter().map(|&j| self.graph.layer_of(j)).max() else {
                break members;
            };
            for j in up {
                if self.graph.layer_of(j) == top {
                    self.stop_child(myself, j);
                }
            }
            // Children without an actor are down already: look at the next layer now, as
            // no exit will come to call back here.
        };
        let Some(group) = self.group.take() else {
            return;
        };
        for j in members {
            self.set_wanted(j, true);
            if self.children[j].state == ChildState::Stopped {
                self.transition(j, ChildState::Pending, None, None);
            }
        }
        for (id, after) in group.crashed {
            if let Some(&i) = self.index.get(&id) {
                if self.children[i].state == ChildState::Backoff {
                    self.schedule_restart(myself, i, after);
                }
            }
        }
    }

    /// An operator's order about child `id` overrides the group restart's plan for it.
    pub(super) fn leave_group(&mut self, id: &str) {
        if let Some(group) = &mut self.group {
            group.members.retain(|m| &**m != id);
            group.crashed.retain(|(c, _)| &**c != id);
        }
    }

    /// A backoff is over: start now if the gate allows, else wait as pending.
    pub(super) fn end_backoff(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        if self.starting_inline {
            // This restart was decided inside a start that failed at once: going round
            // through the mailbox keeps a zero-delay crash loop from recursing without
            // bound, and lets other messages in between.
            let child = &self.children[i];
            let elapsed = Msg::BackoffElapsed {
                child: child.spec.id.clone(),
                generation: child.generation,
            };
            // A failed send means the supervisor is stopping anyway.
            let _ = myself.cast(SupervisorMsg(elapsed));
        } else if self.gate_open(i) {
            self.begin_start(myself, i);
        } else {
            self.transition(i, ChildState::Pending, None, None);
        }
    }

    pub(super) fn restart_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
    ) -> Result<(), SupervisionError> {
        let i = self.not_removing(id)?;
        self.leave_group(id);
        self.set_wanted(i, true);
        self.children[i].history.reset();
        match self.children[i].state {
            ChildState::Running | ChildState::Starting => {
                self.children[i].after_stop = AfterStop::Restart;
                self.stop_child(myself, i);
            }
            ChildState::Stopping => self.children[i].after_stop = AfterStop::Restart,
            ChildState::Backoff | ChildState::Stopped | ChildState::Failed => {
                // A pending backoff timer becomes stale.
                let generation = self.generation();
                self.children[i].generation = generation;
                self.transition(i, ChildState::Pending, None, None);
            }
            ChildState::Pending => {}
        }
        Ok(())
    }
}
