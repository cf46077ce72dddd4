//! Bookkeeping: the indexes, per-layer counters and start frontier that every change of a
//! child keeps in step, the published transitions, and the pump that starts whoever may start.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use ractor::ActorRef;

use super::{Child, SupervisorArgs, SupervisorMsg, SupervisorState};
use crate::event::{ChildInfo, ChildState, ChildTransition, SupervisorEvent};
use crate::graph::DependencyGraph;
use crate::spec::ChildSpec;
use crate::SupervisionError;

/// How the children of a group stand when a supervisor takes it over from a caller that
/// ran it without one (see [`SupervisorHandle::spawn_taking_over`](crate::SupervisorHandle::spawn_taking_over)).
#[derive(Debug, Clone, Default)]
pub struct Takeover {
    pub(super) started: bool,
    pub(super) children: Vec<TakenChild>,
}

impl Takeover {
    /// `started`: whether `start_all` was called (children added later start at once);
    /// `children`: one per child, in the order of the specs.
    pub fn new(started: bool, children: impl IntoIterator<Item = TakenChild>) -> Self {
        Takeover {
            started,
            children: children.into_iter().collect(),
        }
    }
}

/// One child of a [`Takeover`]: pending and not wanted unless set otherwise.
#[derive(Debug, Clone, Copy)]
pub struct TakenChild {
    pub(super) wanted: bool,
    pub(super) running: bool,
    pub(super) since: SystemTime,
}

impl TakenChild {
    /// A child pending since `since`, not wanted up.
    pub fn new(since: SystemTime) -> Self {
        TakenChild {
            wanted: false,
            running: false,
            since,
        }
    }

    /// Whether it is wanted up.
    pub fn wanted(mut self, wanted: bool) -> Self {
        self.wanted = wanted;
        self
    }

    /// Whether it is running rather than pending. Only a child whose worker starts without
    /// an actor ([`Started::without_actor`](crate::Started::without_actor)) may be taken
    /// over running — an actor or a task child would have nothing running to adopt.
    pub fn running(mut self, running: bool) -> Self {
        self.running = running;
        self
    }
}

pub(super) fn build_graph(specs: &[&ChildSpec]) -> Result<DependencyGraph, SupervisionError> {
    DependencyGraph::build(
        specs
            .iter()
            .map(|s| (&*s.id, s.depends_on.iter().map(|d| &**d))),
    )
}

impl SupervisorState {
    pub(super) fn new(args: SupervisorArgs) -> Self {
        let graph = args.graph;
        let mut state = SupervisorState {
            strategy: args.config.strategy,
            children: args.children.into_iter().map(Child::new).collect(),
            index: HashMap::new(),
            by_actor: HashMap::new(),
            graph,
            early_exits: HashMap::new(),
            discarded: HashSet::new(),
            in_motion: Vec::new(),
            waiting: Vec::new(),
            stopping: Vec::new(),
            frontier: 0,
            sweep: 0,
            counts: [0; 7],
            wake: BinaryHeap::new(),
            settle_waiters: Vec::new(),
            stop_all: None,
            advancing: false,
            starting_inline: false,
            group: None,
            groups_formed: 0,
            started: false,
            escalated: None,
            next_generation: 0,
            events: args.events,
        };
        if let Some(takeover) = args.takeover {
            state.take_over(takeover);
        }
        state.reindex();
        state
    }

    /// Puts the children as a [`Takeover`] says, without publishing anything: they already
    /// went through their transitions under whoever ran them. `reindex` follows.
    pub(super) fn take_over(&mut self, takeover: Takeover) {
        self.started = takeover.started;
        let now = Instant::now();
        for (child, taken) in self.children.iter_mut().zip(takeover.children) {
            child.wanted = taken.wanted;
            child.since = taken.since;
            if taken.running {
                child.state = ChildState::Running;
                child.actorless = true;
                child.history.mark_running(now);
            }
        }
    }

    /// Recomputes every index and counter from the children; O(n), used when the set of
    /// children changes.
    pub(super) fn reindex(&mut self) {
        self.index = self
            .children
            .iter()
            .enumerate()
            .map(|(i, c)| (c.spec.id.clone(), i))
            .collect();
        self.by_actor = self
            .children
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.cell.as_ref().map(|cell| (cell.get_id(), i)))
            .collect();
        let depth = self.graph.layers().len();
        self.in_motion = vec![0; depth];
        self.waiting = vec![0; depth];
        self.stopping = vec![0; depth];
        self.counts = [0; 7];
        for (i, c) in self.children.iter().enumerate() {
            let layer = self.graph.layer_of(i);
            self.counts[c.state.index()] += 1;
            self.in_motion[layer] += usize::from(c.in_motion());
            self.waiting[layer] += usize::from(c.waiting());
            self.stopping[layer] += usize::from(c.state == ChildState::Stopping);
        }
        self.frontier = self.in_motion.iter().position(|&n| n > 0).unwrap_or(depth);
        // Indices queued before the change may be stale; every layer is looked at again.
        self.wake.clear();
        self.sweep = 0;
        if let Some(progress) = &mut self.stop_all {
            if progress.layer > depth {
                // The layers shrank under it: the layer now current has not been told yet.
                progress.layer = depth;
                progress.issued = false;
            }
        }
    }

    pub(super) fn wake(&mut self, i: usize) {
        self.wake.push(Reverse((self.graph.layer_of(i), i)));
    }

    pub(super) fn lookup(&self, id: &str) -> Result<usize, SupervisionError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| SupervisionError::UnknownChild(id.to_string()))
    }

    pub(super) fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Applies a change to child `i` and keeps the layer counters, the frontier and the
    /// wake list in step with it. Every change of `state` or `wanted` goes through here.
    pub(super) fn update(&mut self, i: usize, change: impl FnOnce(&mut Child)) {
        let layer = self.graph.layer_of(i);
        let child = &mut self.children[i];
        let (was_moving, was_waiting, was_state) =
            (child.in_motion(), child.waiting(), child.state);
        change(child);
        let (is_moving, is_waiting, is_state) = (child.in_motion(), child.waiting(), child.state);
        if was_state != is_state {
            self.counts[was_state.index()] -= 1;
            self.counts[is_state.index()] += 1;
            if was_state == ChildState::Stopping {
                self.stopping[layer] -= 1;
            }
            if is_state == ChildState::Stopping {
                self.stopping[layer] += 1;
            }
            if is_state == ChildState::Running {
                // Field by field, not `self.wake`, to push without copying the list.
                for &d in self.graph.dependents(i) {
                    self.wake.push(Reverse((self.graph.layer_of(d), d)));
                }
            }
        }
        if was_waiting != is_waiting {
            if is_waiting {
                self.waiting[layer] += 1;
                self.wake(i);
            } else {
                self.waiting[layer] -= 1;
            }
        }
        if was_moving != is_moving {
            if is_moving {
                self.in_motion[layer] += 1;
                self.frontier = self.frontier.min(layer);
            } else {
                self.in_motion[layer] -= 1;
                if layer == self.frontier && self.in_motion[layer] == 0 {
                    let depth = self.in_motion.len();
                    while self.frontier < depth && self.in_motion[self.frontier] == 0 {
                        self.frontier += 1;
                    }
                    // Children above the old frontier were turned away; look again.
                    self.sweep = self.sweep.min(layer + 1);
                }
            }
        }
    }

    /// Moves child `i` to `to`, publishing the transition.
    pub(super) fn transition(
        &mut self,
        i: usize,
        to: ChildState,
        reason: Option<String>,
        delay: Option<Duration>,
    ) {
        let from = self.children[i].state;
        if from == to {
            return;
        }
        let now = SystemTime::now();
        self.update(i, |c| {
            c.state = to;
            c.since = now;
        });
        if !self.events.heard() {
            return;
        }
        let child = &self.children[i];
        self.events.publish(SupervisorEvent::Child(ChildTransition {
            at: now,
            child: child.spec.id.clone(),
            from,
            to,
            reason,
            restarts: child.history.total(),
            delay,
        }));
    }

    pub(super) fn set_wanted(&mut self, i: usize, wanted: bool) {
        self.update(i, |c| c.wanted = wanted);
    }

    /// Whether nothing is in motion: every child is running, down, or waiting on a
    /// dependency that is down.
    pub(super) fn is_settled(&self) -> bool {
        self.stop_all.is_none()
            && self.counts[ChildState::Starting.index()] == 0
            && self.counts[ChildState::Backoff.index()] == 0
            && self.counts[ChildState::Stopping.index()] == 0
    }

    pub(super) fn infos(&self) -> Vec<ChildInfo> {
        (0..self.children.len()).map(|i| self.info(i)).collect()
    }

    pub(super) fn info(&self, i: usize) -> ChildInfo {
        let c = &self.children[i];
        ChildInfo {
            id: c.spec.id.clone(),
            state: c.state,
            since: c.since,
            wanted: c.wanted,
            restarts: c.history.total(),
            last_exit: c.last_exit.as_deref().cloned(),
            layer: self.graph.layer_of(i),
            depends_on: c.spec.depends_on.clone(),
            actor: c.cell.clone(),
        }
    }

    /// Moves the group restart on, starts every woken child whose turn it is, then answers
    /// whoever waits for calm.
    pub(super) fn pump(&mut self, myself: &ActorRef<SupervisorMsg>) {
        loop {
            // A start below may fail at once and form or grow a group: go round until calm.
            let groups_before = self.groups_formed;
            self.advance_group(myself);
            let depth = self.graph.layers().len();
            // Lowest layer first, so a layer is under way before the next is considered.
            while let Some(Reverse((_, i))) = self.wake.pop() {
                if self.may_start(i) {
                    self.begin_start(myself, i);
                }
            }
            // Then the next layer the frontier has passed, one at a time: starting it may
            // put the frontier right back there.
            let mut woke = false;
            while self.sweep < depth && self.sweep <= self.frontier {
                let layer = self.sweep;
                self.sweep += 1;
                if self.waiting[layer] > 0 {
                    for &i in &self.graph.layers()[layer] {
                        if self.children[i].waiting() {
                            self.wake.push(Reverse((layer, i)));
                        }
                    }
                    woke = true;
                    break;
                }
            }
            if !woke && self.groups_formed == groups_before {
                break;
            }
        }
        // Drained: give its memory back rather than keep it for every idle supervisor.
        self.wake.shrink_to_fit();
        if self.is_settled() && !self.settle_waiters.is_empty() {
            let infos = self.infos();
            for waiter in self.settle_waiters.drain(..) {
                let _ = waiter.send(infos.clone());
            }
        }
    }

    pub(super) fn may_start(&self, i: usize) -> bool {
        self.children[i].state == ChildState::Pending && self.gate_open(i)
    }

    /// Whether child `i`, wanted up, may start now: its layer is open and every dependency
    /// is running.
    pub(super) fn gate_open(&self, i: usize) -> bool {
        self.children[i].wanted
            && self.stop_all.is_none()
            && self.escalated.is_none()
            && self.graph.layer_of(i) <= self.frontier
            && self
                .graph
                .depends_on(i)
                .iter()
                .all(|&d| self.children[d].state == ChildState::Running)
    }
}
