//! Stopping: one child (stop signal, kill timer, what follows), removal, and the
//! reverse-order stop of every child.

use ractor::{ActorRef, RpcReplyPort};

use super::bookkeeping::build_graph;
use super::task::KillTimer;
use super::{AfterStop, Msg, StopAll, SupervisorMsg, SupervisorState, STOP_REASON};
use crate::event::ChildState;
use crate::graph::DependencyGraph;
use crate::spec::ChildSpec;
use crate::SupervisionError;

impl SupervisorState {
    /// Asks child `i` to stop, whatever it is doing.
    pub(super) fn stop_child(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        match self.children[i].state {
            ChildState::Running | ChildState::Starting => {
                self.transition(i, ChildState::Stopping, None, None);
                if self.children[i].cell.is_some() || self.children[i].task.is_some() {
                    self.send_stop(myself, i);
                } else if self.children[i].actorless {
                    // Nothing to wait for.
                    self.finish_stop(myself, i);
                }
                // Otherwise the spawn is in flight; `on_spawned` stops it on arrival.
            }
            ChildState::Pending | ChildState::Backoff => {
                // No incarnation to wait for; a pending timer becomes stale.
                let generation = self.generation();
                self.children[i].generation = generation;
                self.finish_stop(myself, i);
            }
            ChildState::Stopping => {}
            ChildState::Stopped | ChildState::Failed => {
                self.children[i].after_stop = AfterStop::Stay;
                self.reply_stopped(i);
            }
        }
    }

    /// Sends the stop signal to the current incarnation (its actor, or its task) and arms
    /// the kill timer.
    pub(super) fn send_stop(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        let child = &self.children[i];
        let signalled = if let Some(cell) = &child.cell {
            cell.stop(Some(STOP_REASON.to_string()));
            true
        } else if let Some(task) = &child.task {
            task.stop.stop();
            true
        } else {
            false
        };
        // A second stop of the same incarnation keeps the first one's deadline.
        if signalled && child.kill_timer.is_none() {
            let id = child.spec.id.clone();
            let generation = child.generation;
            let timer = myself.send_after(child.spec.shutdown, move || {
                SupervisorMsg(Msg::StopTimeout {
                    child: id,
                    generation,
                })
            });
            self.children[i].kill_timer = Some(KillTimer(timer.abort_handle()));
        }
    }

    /// Child `i` is gone after a stop: restart, remove or leave it, as planned.
    pub(super) fn finish_stop(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        self.children[i].cell = None;
        self.children[i].actorless = false;
        self.children[i].task = None;
        self.children[i].kill_timer = None;
        self.children[i].history.mark_down();
        match std::mem::replace(&mut self.children[i].after_stop, AfterStop::Stay) {
            AfterStop::Restart if self.children[i].wanted && self.stop_all.is_none() => {
                self.transition(i, ChildState::Pending, None, None);
                // Whoever waited for the stop gets it: that incarnation is gone.
                self.reply_stopped(i);
            }
            AfterStop::Remove => {
                self.transition(i, ChildState::Stopped, None, None);
                self.reply_stopped(i);
                self.remove(i);
            }
            AfterStop::Restart | AfterStop::Stay => {
                self.transition(i, ChildState::Stopped, None, None);
                self.reply_stopped(i);
            }
        }
        self.advance_stop_all(myself);
    }

    pub(super) fn reply_stopped(&mut self, i: usize) {
        for waiter in self.children[i].stop_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
    }

    pub(super) fn remove(&mut self, i: usize) {
        self.children.remove(i);
        let specs: Vec<&ChildSpec> = self.children.iter().map(|c| &c.spec).collect();
        match build_graph(&specs) {
            Ok(graph) => self.graph = graph,
            // Removing a child nobody depends on cannot break the graph; keep going with an
            // empty graph rather than panic if that invariant is ever broken.
            Err(err) => {
                tracing::error!(%err, "dependency graph broken by a removal");
                self.graph = DependencyGraph::default();
            }
        }
        self.reindex();
    }

    pub(super) fn begin_stop_all(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        waiter: Option<RpcReplyPort<()>>,
    ) {
        match &mut self.stop_all {
            Some(progress) => progress.waiters.extend(waiter),
            None => {
                self.started = false;
                // Everything goes down now; the group's plan to bring members back is void.
                self.group = None;
                for i in 0..self.children.len() {
                    self.set_wanted(i, false);
                }
                self.stop_all = Some(StopAll {
                    layer: self.graph.layers().len(),
                    issued: false,
                    waiters: waiter.into_iter().collect(),
                });
            }
        }
        self.advance_stop_all(myself);
    }

    /// Stops the next layer down once the one above is gone; answers when all are.
    pub(super) fn advance_stop_all(&mut self, myself: &ActorRef<SupervisorMsg>) {
        // A member that stops at once (pending, in backoff) calls back in here from the loop
        // below, before its siblings were told to stop: the outer call carries on instead.
        if self.advancing {
            return;
        }
        self.advancing = true;
        self.advance_stop_all_now(myself);
        self.advancing = false;
    }

    pub(super) fn advance_stop_all_now(&mut self, myself: &ActorRef<SupervisorMsg>) {
        loop {
            let Some(progress) = &mut self.stop_all else {
                return;
            };
            if progress.layer == 0 {
                if let Some(done) = self.stop_all.take() {
                    for waiter in done.waiters {
                        let _ = waiter.send(());
                    }
                }
                return;
            }
            let layer = progress.layer - 1;
            if !progress.issued {
                progress.issued = true;
                let members = self.graph.layers()[layer].clone();
                for i in members {
                    self.stop_child(myself, i);
                }
            }
            let Some(progress) = &mut self.stop_all else {
                return;
            };
            if self.stopping[layer] > 0 {
                return;
            }
            progress.layer = layer;
            progress.issued = false;
        }
    }

    pub(super) fn remove_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
        reply: RpcReplyPort<Result<(), SupervisionError>>,
    ) {
        let i = match self.lookup(id) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let dependents: Vec<String> = self
            .graph
            .dependents(i)
            .iter()
            .map(|&d| self.children[d].spec.id.to_string())
            .collect();
        if !dependents.is_empty() {
            let _ = reply.send(Err(SupervisionError::HasDependents {
                child: id.to_string(),
                dependents,
            }));
            return;
        }
        self.leave_group(id);
        self.set_wanted(i, false);
        self.children[i].stop_waiters.push(reply);
        match self.children[i].state {
            ChildState::Running | ChildState::Starting | ChildState::Stopping => {
                self.children[i].after_stop = AfterStop::Remove;
                self.stop_child(myself, i);
            }
            ChildState::Pending
            | ChildState::Backoff
            | ChildState::Stopped
            | ChildState::Failed => {
                self.reply_stopped(i);
                self.remove(i);
            }
        }
    }
}
