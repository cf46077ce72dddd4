//! Supervision benchmarks (criterion; figures go in README's Performance section).
//!
//! - `restart/in_process_child`: a supervised in-process actor child crashes (its handler
//!   returns an error) until the supervisor reports it running again, seen by an event
//!   subscriber.
//! - `restart/task_child`: the same for a task child (`ChildSpec::task`) whose future returns
//!   an error.
//! - `baseline/ractor_spawn_linked`: a bare ractor `spawn_linked` + stop, the floor any
//!   supervisor built on ractor pays per restart; measured in the same run for comparison.
//! - `start/100k_children`: 100,000 in-process actor children in 100 dependency layers,
//!   started in order under one supervisor until all are running.
//! - `start/100k_task_children`: the same with task children.
//!
//! Before criterion runs, the restart latencies are also sampled 20,000 times each and
//! printed as percentiles, since criterion reports means of batches rather than a p50; and
//! each 100,000-children start (and 100,000 bare ractor actors) runs once in a fresh process
//! of its own, which prints its cold start time and its RSS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, Criterion};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use supervision::{
    Backoff, ChildSpec, ChildState, Intensity, SupervisorConfig, SupervisorEvent, SupervisorHandle,
    TaskContext,
};
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, Notify};

/// When the child last crashed, stamped by the child itself just before it fails.
type CrashStamp = Arc<Mutex<Option<SystemTime>>>;

/// Fails on any message, after stamping the time.
struct Crashy(CrashStamp);

impl Actor for Crashy {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
        *self.0.lock().expect("stamp lock") = Some(SystemTime::now());
        Err("crash".into())
    }
}

struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Which kind of in-process child a benchmark supervises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A ractor actor (`ChildSpec::actor`).
    Actor,
    /// A tokio task (`ChildSpec::task`).
    Task,
}

/// A supervisor with one crash-on-command child that may restart without limit and without
/// delay: the benchmark measures the restart path, not the backoff.
async fn crashy_supervisor(kind: Kind) -> Restarter {
    let stamp = CrashStamp::default();
    let child_stamp = stamp.clone();
    let crash = Arc::new(Notify::new());
    let spec = match kind {
        Kind::Actor => ChildSpec::actor("crashy", move || (Crashy(child_stamp.clone()), ())),
        Kind::Task => {
            let crash = crash.clone();
            // Waits for the command, stamps the time and fails.
            ChildSpec::task("crashy", move |_: TaskContext| {
                let (crash, stamp) = (crash.clone(), child_stamp.clone());
                async move {
                    crash.notified().await;
                    *stamp.lock().expect("stamp lock") = Some(SystemTime::now());
                    Err("crash".into())
                }
            })
        }
    };
    let spec = spec
        .intensity(Intensity::new(u32::MAX, Duration::from_millis(1)))
        .backoff(Backoff::new(Duration::ZERO, Duration::ZERO));
    let (sup, _) = SupervisorHandle::spawn(SupervisorConfig::default(), vec![spec])
        .await
        .expect("spawn supervisor");
    let mut events = sup.subscribe();
    sup.start_all().await.expect("start");
    wait_running(&mut events).await;
    Restarter {
        sup,
        events,
        stamp,
        kind,
        crash,
    }
}

struct Restarter {
    sup: SupervisorHandle,
    events: broadcast::Receiver<SupervisorEvent>,
    stamp: CrashStamp,
    kind: Kind,
    /// The task child's crash command (a permit, so it waits for a task not polled yet).
    crash: Arc<Notify>,
}

/// Waits for the next transition to running and returns when the supervisor made it.
async fn wait_running(events: &mut broadcast::Receiver<SupervisorEvent>) -> SystemTime {
    loop {
        match events.recv().await {
            Ok(SupervisorEvent::Child(t)) if t.to == ChildState::Running => return t.at,
            Ok(_) => {}
            Err(e) => panic!("event stream broke: {e}"),
        }
    }
}

/// One restart, timed two ways.
struct Timing {
    /// From the child's failure to the supervisor marking the new incarnation running.
    crash_to_running: Duration,
    /// From sending the crash command to a subscriber seeing `running`: adds the delivery
    /// of the command and the wake-up of the subscriber.
    observed: Duration,
}

/// Crashes the child once and times its return.
async fn one_restart(r: &mut Restarter) -> Timing {
    let t0 = match r.kind {
        Kind::Actor => {
            let child = r.sup.children().await.expect("children").remove(0);
            let actor: ActorRef<()> = child.actor.expect("running child has an actor").into();
            let t0 = Instant::now();
            actor.cast(()).expect("cast");
            t0
        }
        Kind::Task => {
            let t0 = Instant::now();
            r.crash.notify_one();
            t0
        }
    };
    let running_at = wait_running(&mut r.events).await;
    let observed = t0.elapsed();
    let crashed_at = r
        .stamp
        .lock()
        .expect("stamp lock")
        .take()
        .expect("child stamped its crash");
    Timing {
        crash_to_running: running_at.duration_since(crashed_at).unwrap_or_default(),
        observed,
    }
}

/// 20,000 restarts after 1,000 of warm-up.
fn restart_samples(rt: &Runtime, kind: Kind) -> Vec<Timing> {
    rt.block_on(async {
        let mut r = crashy_supervisor(kind).await;
        for _ in 0..1_000 {
            one_restart(&mut r).await;
        }
        let mut samples = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            samples.push(one_restart(&mut r).await);
        }
        r.sup.shutdown().await.expect("shutdown");
        samples
    })
}

fn restart_percentiles(rt: &Runtime) {
    let samples = restart_samples(rt, Kind::Actor);
    let task_samples = restart_samples(rt, Kind::Task);
    let baseline = rt.block_on(async {
        let (parent, _) = Actor::spawn(None, Idle, ()).await.expect("parent");
        let mut samples = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let t0 = Instant::now();
            let (child, _) = Actor::spawn_linked(None, Idle, (), parent.get_cell())
                .await
                .expect("spawn");
            samples.push(t0.elapsed());
            child.unlink(parent.get_cell());
            child.stop(None);
        }
        parent.stop(None);
        samples
    });
    print_percentiles(
        "restart, crash -> running again",
        samples.iter().map(|t| t.crash_to_running).collect(),
    );
    print_percentiles(
        "restart, crash command sent -> subscriber sees running",
        samples.iter().map(|t| t.observed).collect(),
    );
    print_percentiles(
        "task child restart, crash -> running again",
        task_samples.iter().map(|t| t.crash_to_running).collect(),
    );
    print_percentiles(
        "task child restart, crash command sent -> subscriber sees running",
        task_samples.iter().map(|t| t.observed).collect(),
    );
    print_percentiles("baseline: ractor spawn_linked", baseline);
}

fn print_percentiles(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{what}: n={} p50={:.1}µs p90={:.1}µs p99={:.1}µs",
        samples.len(),
        at(0.50).as_secs_f64() * 1e6,
        at(0.90).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
    );
}

const CHILDREN: usize = 100_000;
const LAYERS: usize = 100;

/// 100 layers of 1,000; each child depends on one child of the layer below.
fn wide_tree(kind: Kind) -> Vec<ChildSpec> {
    let per_layer = CHILDREN / LAYERS;
    (0..CHILDREN)
        .map(|i| {
            let id = format!("c{i}");
            let spec = match kind {
                Kind::Actor => ChildSpec::actor(id, || (Idle, ())),
                // Idle until asked to stop.
                Kind::Task => ChildSpec::task(id, |ctx: TaskContext| async move {
                    ctx.stop.stopped().await;
                    Ok(())
                }),
            };
            if i < per_layer {
                spec
            } else {
                spec.depends_on([format!("c{}", i - per_layer)])
            }
        })
        .collect()
}

/// Starts the tree, returns the time from `start_all` until every child was running.
async fn start_tree(kind: Kind) -> (SupervisorHandle, Duration) {
    let (sup, _) = SupervisorHandle::spawn(SupervisorConfig::default(), wide_tree(kind))
        .await
        .expect("spawn supervisor");
    let t0 = Instant::now();
    sup.start_all().await.expect("start");
    let children = sup.settled().await.expect("settled");
    let elapsed = t0.elapsed();
    assert!(children.iter().all(|c| c.state == ChildState::Running));
    (sup, elapsed)
}

fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn tree_once(rt: &Runtime, kind: Kind) {
    let before = rss_mb("VmRSS:");
    let (elapsed, during) = rt.block_on(async {
        let (sup, elapsed) = start_tree(kind).await;
        let during = rss_mb("VmRSS:");
        sup.shutdown().await.expect("shutdown");
        (elapsed, during)
    });
    let kind = match kind {
        Kind::Actor => "actor",
        Kind::Task => "task",
    };
    println!(
        "{CHILDREN} {kind} children in {LAYERS} layers: all running after {:.0} ms; RSS {:.0} MB \
         with them running (process before: {:.0} MB, peak {:.0} MB)",
        elapsed.as_secs_f64() * 1e3,
        during,
        before,
        rss_mb("VmHWM:"),
    );
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    for (name, kind) in [
        ("restart/in_process_child", Kind::Actor),
        ("restart/task_child", Kind::Task),
    ] {
        let restarter = Arc::new(tokio::sync::Mutex::new(
            rt.block_on(crashy_supervisor(kind)),
        ));
        c.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let restarter = restarter.clone();
                async move {
                    let mut r = restarter.lock().await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += one_restart(&mut r).await.crash_to_running;
                    }
                    total
                }
            })
        });
        rt.block_on(async { restarter.lock().await.sup.shutdown().await })
            .expect("shutdown");
    }

    c.bench_function("baseline/ractor_spawn_linked", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let (parent, _) = Actor::spawn(None, Idle, ()).await.expect("parent");
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let (child, _) = Actor::spawn_linked(None, Idle, (), parent.get_cell())
                    .await
                    .expect("spawn");
                total += t0.elapsed();
                child.unlink(parent.get_cell());
                child.stop(None);
            }
            parent.stop(None);
            total
        })
    });

    let mut group = c.benchmark_group("start");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for (name, kind) in [
        ("100k_children", Kind::Actor),
        ("100k_task_children", Kind::Task),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (sup, elapsed) = start_tree(kind).await;
                    total += elapsed;
                    sup.shutdown().await.expect("shutdown");
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(supervision, benches);

/// Set in a child process of this benchmark to run one cold measurement in a fresh process.
const PROBE_VAR: &str = "SESSION_MANAGER_BENCH_PROBE";

/// 100,000 bare ractor actors linked to one parent: what ractor itself costs, without any
/// supervision, for comparison with the supervised tree.
fn bare_once(rt: &Runtime) {
    let before = rss_mb("VmRSS:");
    let (elapsed, during) = rt.block_on(async {
        let (parent, _) = Actor::spawn(None, Idle, ()).await.expect("parent");
        let t0 = Instant::now();
        let mut children = Vec::with_capacity(CHILDREN);
        for _ in 0..CHILDREN {
            let (child, _) = Actor::spawn_linked(None, Idle, (), parent.get_cell())
                .await
                .expect("spawn");
            children.push(child);
        }
        let elapsed = t0.elapsed();
        let during = rss_mb("VmRSS:");
        parent.stop_children_and_wait(None, None).await;
        parent.stop(None);
        (elapsed, during)
    });
    println!(
        "baseline: {CHILDREN} bare ractor actors spawned one by one in {:.0} ms; RSS {:.0} MB \
         with them alive (process before: {:.0} MB)",
        elapsed.as_secs_f64() * 1e3,
        during,
        before,
    );
}

/// Runs one probe in a fresh process, so its memory and cold-start figures are its own.
fn probe(name: &str) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return println!("cannot run the {name} probe: {e}"),
    };
    match std::process::Command::new(exe)
        .env(PROBE_VAR, name)
        .output()
    {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!(
            "the {name} probe failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => println!("cannot run the {name} probe: {e}"),
    }
}

fn main() {
    let rt = runtime();
    match std::env::var(PROBE_VAR).as_deref() {
        Ok("tree") => return tree_once(&rt, Kind::Actor),
        Ok("task_tree") => return tree_once(&rt, Kind::Task),
        Ok("bare") => return bare_once(&rt),
        _ => {}
    }
    restart_percentiles(&rt);
    drop(rt);
    probe("tree");
    probe("task_tree");
    probe("bare");
    supervision();
    Criterion::default().configure_from_args().final_summary();
}
