//! The supervision core through its public API, as an embedding service uses it.

mod groups;
mod lifecycle;
mod stopping;
mod tasks;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus};
use supervision::{
    Backoff, ChildError, ChildSpec, ChildState, Exit, Intensity, Restart, StartContext, StartError,
    Started, Strategy, SupervisionError, SupervisorConfig, SupervisorEvent, SupervisorHandle,
    TaskContext,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::timeout;

/// What the test workers did, in order: "start:<id>" and "stop:<id>".
type Journal = Arc<Mutex<Vec<String>>>;

enum Cmd {
    /// Return an error from the handler.
    Fail,
    /// Panic in the handler.
    Panic,
    /// Stop normally.
    Finish,
}

struct TestWorker {
    id: &'static str,
    journal: Journal,
    /// Sleep this long in pre_start, to keep a spawn in flight.
    slow_start: Option<Duration>,
    /// Sleep this long in post_stop, to keep a stop in flight or trip the kill timer.
    slow_stop: Option<Duration>,
}

impl Actor for TestWorker {
    type Msg = Cmd;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Cmd>, _: ()) -> Result<(), ActorProcessingErr> {
        if let Some(d) = self.slow_start {
            tokio::time::sleep(d).await;
        }
        self.journal
            .lock()
            .unwrap()
            .push(format!("start:{}", self.id));
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<Cmd>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        if let Some(d) = self.slow_stop {
            tokio::time::sleep(d).await;
        }
        self.journal
            .lock()
            .unwrap()
            .push(format!("stop:{}", self.id));
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<Cmd>,
        cmd: Cmd,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match cmd {
            Cmd::Fail => Err("worker failed".into()),
            Cmd::Panic => panic!("worker panicked"),
            Cmd::Finish => {
                me.stop(Some("done".into()));
                Ok(())
            }
        }
    }
}

fn worker(id: &'static str, journal: &Journal) -> ChildSpec {
    worker_with(id, journal, None, None)
}

/// A worker whose `post_stop` takes `ms` milliseconds.
fn slow_stop(id: &'static str, journal: &Journal, ms: u64) -> ChildSpec {
    worker_with(id, journal, None, Some(Duration::from_millis(ms)))
}

fn worker_with(
    id: &'static str,
    journal: &Journal,
    slow_start: Option<Duration>,
    slow_stop: Option<Duration>,
) -> ChildSpec {
    let journal = journal.clone();
    ChildSpec::actor(id, move || {
        (
            TestWorker {
                id,
                journal: journal.clone(),
                slow_start,
                slow_stop,
            },
            (),
        )
    })
    .backoff(fast_backoff())
}

/// A supervisor with `children`, started and settled, and a subscription to its events.
async fn started(
    strategy: Strategy,
    children: Vec<ChildSpec>,
) -> (SupervisorHandle, broadcast::Receiver<SupervisorEvent>) {
    let (sup, _join) = SupervisorHandle::spawn(config(strategy), children)
        .await
        .unwrap();
    let rx = sup.subscribe();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    (sup, rx)
}

/// Waits (bounded) for `child` to enter `state`.
async fn until(
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    child: &str,
    state: ChildState,
) -> SupervisorEvent {
    wait_for(rx, &format!("{child} {state}"), |e| {
        entered(e, child, state)
    })
    .await
}

/// Asserts every child is in `state`.
async fn assert_all(sup: &SupervisorHandle, state: ChildState) {
    let states = states(sup).await;
    assert!(states.iter().all(|(_, s)| *s == state), "{states:?}");
}

/// A started supervisor whose one child, `m`, takes 200 ms to stop.
async fn running_slow_stopper(
    journal: &Journal,
) -> (SupervisorHandle, broadcast::Receiver<SupervisorEvent>) {
    started(Strategy::OneForOne, vec![slow_stop("m", journal, 200)]).await
}

/// Starts `call` (which stops `m`, alone or with all) in the background and returns once
/// `m` is stopping.
async fn while_stopping<F, Fut>(
    sup: &SupervisorHandle,
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    call: F,
) -> tokio::task::JoinHandle<Result<(), SupervisionError>>
where
    F: FnOnce(SupervisorHandle) -> Fut,
    Fut: std::future::Future<Output = Result<(), SupervisionError>> + Send + 'static,
{
    let in_flight = tokio::spawn(call(sup.clone()));
    wait_for(rx, "m stopping", |e| entered(e, "m", ChildState::Stopping)).await;
    in_flight
}

/// A supervisor whose one child, `s`, is still spawning (its `pre_start` takes 300 ms).
async fn spawning_slowly(journal: &Journal) -> SupervisorHandle {
    let slow = worker_with("s", journal, Some(Duration::from_millis(300)), None);
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), vec![slow])
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    sup
}

/// A child whose first crash escalates: no restart allowed, `escalate` set.
fn critical(journal: &Journal) -> ChildSpec {
    worker("critical", journal)
        .intensity(Intensity::new(0, Duration::from_secs(60)))
        .escalate(true)
}

/// A worker whose every restart after the first waits `delay`.
fn steady_backoff(id: &'static str, journal: &Journal, delay: Duration) -> ChildSpec {
    worker(id, journal).backoff(
        Backoff::new(delay, delay)
            .with_multiplier(1.0)
            .with_reset_after(Duration::from_secs(60)),
    )
}

/// Crashes `id` until it sits in backoff (its first restart is immediate).
async fn crash_into_backoff(
    sup: &SupervisorHandle,
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    id: &str,
) {
    loop {
        cmd(&actor_of(sup, id).await, Cmd::Fail);
        wait_for(rx, "backoff", |e| entered(e, id, ChildState::Backoff)).await;
        if state_of(sup, id).await == Some(ChildState::Backoff) {
            return;
        }
        wait_for(rx, "running", |e| entered(e, id, ChildState::Running)).await;
    }
}

fn fast_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(10), Duration::from_millis(40))
        .with_multiplier(2.0)
        .with_reset_after(Duration::from_secs(60))
}

fn config(strategy: Strategy) -> SupervisorConfig {
    SupervisorConfig::new().strategy(strategy)
}

const PATIENCE: Duration = Duration::from_secs(10);

/// Waits for an event matching `pred`, failing the test after `PATIENCE`.
async fn wait_for(
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    what: &str,
    mut pred: impl FnMut(&SupervisorEvent) -> bool,
) -> SupervisorEvent {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("lagged {n} events"),
                Err(broadcast::error::RecvError::Closed) => panic!("events closed"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn entered(ev: &SupervisorEvent, child: &str, to: ChildState) -> bool {
    matches!(ev, SupervisorEvent::Child(t) if &*t.child == child && t.to == to)
}

async fn actor_of(sup: &SupervisorHandle, id: &str) -> ActorCell {
    let children = sup.children().await.unwrap();
    let child = children.iter().find(|c| &*c.id == id).unwrap();
    child.actor.clone().unwrap()
}

fn cmd(cell: &ActorCell, c: Cmd) {
    ActorRef::<Cmd>::from(cell.clone()).cast(c).unwrap();
}

async fn state_of(sup: &SupervisorHandle, id: &str) -> Option<ChildState> {
    sup.children()
        .await
        .unwrap()
        .into_iter()
        .find(|c| &*c.id == id)
        .map(|c| c.state)
}

/// Waits (bounded) until nothing is in motion.
async fn calm(sup: &SupervisorHandle) {
    timeout(PATIENCE, sup.settled())
        .await
        .expect("settled() hung")
        .unwrap();
}

async fn states(sup: &SupervisorHandle) -> Vec<(String, ChildState)> {
    sup.children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id.to_string(), c.state))
        .collect()
}

fn journal() -> Journal {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(j: &Journal, prefix: &str) -> Vec<String> {
    j.lock()
        .unwrap()
        .iter()
        .filter_map(|e| e.strip_prefix(prefix).map(str::to_string))
        .collect()
}

/// db <- api <- web, plus an independent cache; declared out of order on purpose.
fn web_stack(j: &Journal) -> Vec<ChildSpec> {
    vec![
        worker("web", j).depends_on(["api", "db"]),
        worker("api", j).depends_on(["db"]),
        worker("db", j),
        worker("cache", j),
    ]
}
