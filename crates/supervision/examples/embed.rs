//! Embedding the supervision core in your own service: two actor workers, one depending on
//! the other, and a task child (a plain future, no actor) beside the dependent one,
//! supervised with restarts and backoff. The example crashes the dependent worker three
//! times, prints every state change, and exits by itself; the task stops cleanly on the
//! supervisor's stop signal.
//!
//! Run it with `cargo run -p supervision --example embed`.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use supervision::{
    Backoff, ChildSpec, ChildState, Intensity, Strategy, SupervisorConfig, SupervisorEvent,
    SupervisorHandle, TaskContext,
};

/// A worker of yours: here it only knows how to crash on request.
struct Worker(&'static str);

enum Msg {
    Crash,
}

impl Actor for Worker {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        println!("  [{}] pre_start", self.0);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Msg>,
        msg: Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Crash => Err(format!("{} hit a bug", self.0).into()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
        .with_multiplier(2.0)
        .with_reset_after(Duration::from_secs(30));
    let children = vec![
        ChildSpec::actor("store", || (Worker("store"), ())),
        ChildSpec::actor("indexer", || (Worker("indexer"), ()))
            .depends_on(["store"])
            .backoff(backoff)
            .intensity(Intensity::new(5, Duration::from_secs(60))),
        // In-process work that needs no mailbox: a task child, far lighter than an actor.
        ChildSpec::task("flusher", |ctx: TaskContext| async move {
            let mut flushes = 0u64;
            loop {
                tokio::select! {
                    _ = ctx.stop.stopped() => {
                        println!("  [flusher] stopping after {flushes} flushes");
                        return Ok(());
                    }
                    _ = tokio::time::sleep(Duration::from_millis(50)) => flushes += 1,
                }
            }
        })
        .depends_on(["store"]),
    ];
    let config = SupervisorConfig::new().strategy(Strategy::OneForOne);
    let (supervisor, join) = SupervisorHandle::spawn(config, children).await?;

    let mut events = supervisor.subscribe();
    supervisor.start_all().await?;
    print_until(&mut events, "indexer", ChildState::Running).await?;
    println!("all running; crashing `indexer` three times");

    for _ in 0..3 {
        let indexer = supervisor
            .children()
            .await?
            .into_iter()
            .find(|c| &*c.id == "indexer")
            .and_then(|c| c.actor)
            .ok_or("indexer has no actor")?;
        ActorRef::<Msg>::from(indexer).cast(Msg::Crash)?;
        // The supervisor restarts it after its backoff: 0 ms, then 100 ms, then 200 ms.
        print_until(&mut events, "indexer", ChildState::Running).await?;
    }

    for child in supervisor.children().await? {
        println!(
            "{}: {} after {} restarts",
            child.id, child.state, child.restarts
        );
    }
    supervisor.shutdown().await?;
    join.await?;
    println!("supervisor stopped cleanly");
    Ok(())
}

/// Prints state changes until `child` enters `state`; gives up after five seconds.
async fn print_until(
    events: &mut tokio::sync::broadcast::Receiver<SupervisorEvent>,
    child: &str,
    state: ChildState,
) -> Result<(), Box<dyn std::error::Error>> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let SupervisorEvent::Child(t) = events.recv().await? {
                let delay = t
                    .delay
                    .map(|d| format!(" (next start in {d:?})"))
                    .unwrap_or_default();
                let reason = t.reason.map(|r| format!(": {r}")).unwrap_or_default();
                println!("{:>8} {} -> {}{reason}{delay}", t.child, t.from, t.to);
                if &*t.child == child && t.to == state {
                    return Ok(());
                }
            }
        }
    })
    .await?
}
