//! Starting children: an incarnation's spawn and readiness, and the orders that want
//! children up.

use std::task::{Context, Poll, Waker};
use std::time::Instant;

use ractor::ActorRef;

use super::bookkeeping::build_graph;
use super::task::{TaskReport, TaskRun, TaskRunner};
use super::{
    AfterStop, Child, Msg, Readiness, Spawn, SpawnReport, SupervisorMsg, SupervisorState,
    STOP_REASON,
};
use crate::error::{BoxError, ChildError, StartError};
use crate::event::ChildState;
use crate::policy::Exit;
use crate::spec::{BoxFuture, ChildSpec, StartContext, Started};
use crate::SupervisionError;

impl SupervisorState {
    /// Starts a new incarnation of child `i`.
    ///
    /// The worker's future is polled once right here: an in-process actor is usually spawned
    /// by then, which saves two task hops on the restart path. Whatever is left to wait for
    /// (a slow spawn, a readiness future) continues in a task that reports back by message,
    /// so the supervisor never waits on a child.
    pub(super) fn begin_start(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        let generation = self.generation();
        self.children[i].generation = generation;
        self.children[i].failure = None;
        self.children[i].actorless = false;
        self.transition(i, ChildState::Starting, None, None);
        let child = &self.children[i];
        let ctx = StartContext {
            supervisor: myself.get_cell(),
            child: child.spec.id.clone(),
            restarts: child.history.total(),
        };
        let id = child.spec.id.clone();
        let timeout = child.spec.start_timeout;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut start = child.spec.worker.start(ctx);

        let mut cx = Context::from_waker(Waker::noop());
        // What is left to await, if anything: `None` from it means nothing to report.
        let rest: BoxFuture<Option<Result<(), ChildError>>> = match start.as_mut().poll(&mut cx) {
            Poll::Ready(result) => {
                let (spawned, ready) = split_started(result);
                let outer = std::mem::replace(&mut self.starting_inline, true);
                self.on_spawned(myself, &id, generation, spawned);
                self.starting_inline = outer;
                let Some(ready) = ready else { return };
                Box::pin(async move { Some(ready.await.map_err(not_ready)) })
            }
            Poll::Pending => {
                let myself = myself.clone();
                let id = id.clone();
                Box::pin(async move {
                    let (spawned, ready) = split_started(start.await);
                    let spawned = Msg::Spawned {
                        child: id,
                        generation,
                        result: spawned,
                    };
                    // A failed send means the supervisor is gone; the child, linked to it,
                    // goes too.
                    myself.cast(SupervisorMsg(spawned)).ok()?;
                    Some(ready?.await.map_err(not_ready))
                })
            }
        };
        let myself = myself.clone();
        tokio::spawn(async move {
            let outcome = match deadline {
                // Dropping `rest` at the deadline cancels whatever it still waits for.
                Some(at) => tokio::time::timeout_at(at, rest).await.unwrap_or_else(|_| {
                    Some(Err(ChildError::StartTimeout(timeout.unwrap_or_default())))
                }),
                None => rest.await,
            };
            if let Some(result) = outcome {
                let _ = myself.cast(SupervisorMsg(Msg::Ready {
                    child: id,
                    generation,
                    result,
                }));
            }
        });
    }

    pub(super) fn on_spawned(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
        generation: u64,
        result: SpawnReport,
    ) {
        let current = self
            .index
            .get(id)
            .copied()
            .filter(|&i| self.children[i].generation == generation);
        let Some(i) = current else {
            // A superseded incarnation: it must not live on unsupervised. (A task of one is
            // simply never spawned.)
            if let Ok(Spawn {
                cell: Some(cell), ..
            }) = result
            {
                if self.early_exits.remove(&cell.get_id()).is_none() {
                    self.discarded.insert(cell.get_id());
                    cell.stop(Some(STOP_REASON.to_string()));
                }
            }
            return;
        };
        match result {
            Err(reason) => {
                if self.children[i].state == ChildState::Stopping {
                    self.finish_stop(myself, i);
                } else {
                    self.on_exit(myself, i, Exit::Abnormal(ChildError::Start(reason)));
                }
            }
            Ok(Spawn {
                cell: None,
                task: Some(task),
                awaits_ready,
            }) => {
                if self.children[i].state == ChildState::Stopping {
                    // Asked to stop before it ran: it never will.
                    self.finish_stop(myself, i);
                    return;
                }
                let report = TaskReport {
                    supervisor: myself.clone(),
                    child: self.children[i].spec.id.clone(),
                    generation,
                    exit: None,
                };
                let abort = tokio::spawn(TaskRunner::new(task.run, report)).abort_handle();
                self.children[i].task = Some(TaskRun {
                    stop: task.stop,
                    abort,
                });
                if !awaits_ready {
                    self.mark_running(i);
                }
            }
            Ok(Spawn {
                cell: None,
                task: None,
                ..
            }) => {
                // Nothing runs: the child is up (or, asked to stop meanwhile, down) at once.
                self.children[i].actorless = true;
                if self.children[i].state == ChildState::Stopping {
                    self.finish_stop(myself, i);
                } else {
                    self.mark_running(i);
                }
            }
            Ok(Spawn {
                cell: Some(cell),
                awaits_ready,
                ..
            }) => {
                let actor = cell.get_id();
                self.children[i].cell = Some(cell.clone());
                if let Some(exit) = self.early_exits.remove(&actor) {
                    self.children[i].cell = None;
                    if self.children[i].state == ChildState::Stopping {
                        self.finish_stop(myself, i);
                    } else {
                        self.on_exit(myself, i, exit);
                    }
                    return;
                }
                self.by_actor.insert(actor, i);
                if self.children[i].state == ChildState::Stopping {
                    self.send_stop(myself, i);
                } else if !awaits_ready {
                    self.mark_running(i);
                }
            }
        }
    }

    pub(super) fn on_ready(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
        generation: u64,
        result: Result<(), ChildError>,
    ) {
        let Some(&i) = self.index.get(id) else { return };
        let child = &self.children[i];
        if child.generation != generation {
            return;
        }
        // Stopped while its spawn was in flight, and the spawn never finished (cut off at
        // the deadline): there is nothing left to wait for.
        let nothing_runs = child.cell.is_none() && child.task.is_none();
        if child.state == ChildState::Stopping && nothing_runs && result.is_err() {
            self.finish_stop(myself, i);
            return;
        }
        if child.state != ChildState::Starting {
            return;
        }
        match result {
            Ok(()) => self.mark_running(i),
            // The spawn itself never finished (timed out): nothing to stop, judge it now.
            Err(reason) if nothing_runs => {
                self.on_exit(myself, i, Exit::Abnormal(reason));
            }
            Err(reason) => {
                // Take it down; its exit is then judged as this failure.
                self.children[i].failure = Some(reason);
                self.send_stop(myself, i);
            }
        }
    }

    pub(super) fn mark_running(&mut self, i: usize) {
        self.children[i].history.mark_running(Instant::now());
        self.transition(i, ChildState::Running, None, None);
    }

    /// Wants every enabled child up; stopped and failed ones start over with a fresh
    /// restart history.
    pub(super) fn start_all(&mut self) {
        self.started = true;
        for i in 0..self.children.len() {
            if self.children[i].spec.enabled {
                self.want_up(i);
            }
        }
    }

    /// Wants child `i` up: a stopped or failed one becomes pending with a fresh history,
    /// a stopping one comes back once it is down.
    pub(super) fn want_up(&mut self, i: usize) {
        if self.children[i].after_stop == AfterStop::Remove {
            return;
        }
        self.set_wanted(i, true);
        let child = &mut self.children[i];
        match child.state {
            ChildState::Stopped | ChildState::Failed => {
                child.history.reset();
                self.transition(i, ChildState::Pending, None, None);
            }
            ChildState::Stopping => child.after_stop = AfterStop::Restart,
            ChildState::Pending
            | ChildState::Starting
            | ChildState::Running
            | ChildState::Backoff => {}
        }
    }

    /// Refuses orders about a child that is on its way out of the supervisor.
    pub(super) fn not_removing(&self, id: &str) -> Result<usize, SupervisionError> {
        let i = self.lookup(id)?;
        if self.children[i].after_stop == AfterStop::Remove {
            return Err(SupervisionError::Removing(id.to_string()));
        }
        Ok(i)
    }

    pub(super) fn start_child(&mut self, id: &str) -> Result<(), SupervisionError> {
        let i = self.not_removing(id)?;
        self.leave_group(id);
        self.want_up(i);
        if self.children[i].state == ChildState::Backoff {
            // Asked for by name: start now. (Its timer may belong to a group it just left,
            // which would never have fired.)
            let generation = self.generation();
            self.children[i].generation = generation;
            self.transition(i, ChildState::Pending, None, None);
        }
        Ok(())
    }

    pub(super) fn add_child(&mut self, spec: ChildSpec) -> Result<(), SupervisionError> {
        if self.stop_all.is_some() || self.escalated.is_some() {
            return Err(SupervisionError::ShuttingDown);
        }
        let mut specs: Vec<&ChildSpec> = self.children.iter().map(|c| &c.spec).collect();
        specs.push(&spec);
        let graph = build_graph(&specs)?;
        let wanted = self.started && spec.enabled;
        let mut child = Child::new(spec);
        child.wanted = wanted;
        self.children.push(child);
        self.graph = graph;
        self.reindex();
        Ok(())
    }
}

/// Splits a worker's result into the spawn report and the readiness future, if any.
pub(super) fn split_started(
    result: Result<Started, StartError>,
) -> (SpawnReport, Option<Readiness>) {
    match result {
        Ok(started) => {
            let spawn = Spawn {
                cell: started.cell,
                task: started.task,
                awaits_ready: started.ready.is_some(),
            };
            (Ok(spawn), started.ready)
        }
        Err(e) => (Err(e), None),
    }
}

fn not_ready(error: BoxError) -> ChildError {
    ChildError::NotReady(error.into())
}
