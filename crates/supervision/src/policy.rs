//! Restart policy and the pure decision function.
//!
//! Everything here is plain data and arithmetic on [`Instant`]s: no actors, no timers, no I/O,
//! so the whole restart behaviour can be unit-tested exhaustively and reasoned about on paper.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::error::ChildError;

/// When a child that stopped should be started again (Erlang/OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Restart {
    /// Always restarted, whether it exited normally or crashed: a service meant to run forever.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit: a job that may finish on its own.
    Transient,
    /// Never restarted: a one-shot whose exit is final either way.
    Temporary,
}

impl Restart {
    /// The lowercase word used in configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Restart {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "permanent" => Ok(Restart::Permanent),
            "transient" => Ok(Restart::Transient),
            "temporary" => Ok(Restart::Temporary),
            _ => Err(UnknownWord {
                found: s.to_string(),
                expected: "permanent, transient, temporary",
            }),
        }
    }
}

/// Which siblings are restarted together with a crashed child.
///
/// # Examples
///
/// Three children started in order (`b` needs `a`, `c` needs `b`); `b` crashes on its first
/// run. Each strategy restarts a different set, within `b`'s intensity of one restart a
/// minute (a second crash inside that minute would leave `b` failed: see [`Intensity`]).
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use supervision::{ChildSpec, ChildState, Intensity, Strategy, SupervisorConfig, SupervisorEvent, SupervisorHandle};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// for (strategy, restarted) in [
///     (Strategy::OneForOne, [false, true, false]),
///     (Strategy::RestForOne, [false, true, true]),
///     (Strategy::OneForAll, [true, true, true]),
/// ] {
///     let starts: Arc<[AtomicU32; 3]> = Arc::default();
///     let child = |i: usize, id: &'static str| {
///         let starts = starts.clone();
///         ChildSpec::task(id, move |ctx| {
///             let first = starts[i].fetch_add(1, Ordering::SeqCst) == 0;
///             async move {
///                 if i == 1 && first {
///                     return Err("boom".into());
///                 }
///                 ctx.stop.stopped().await;
///                 Ok(())
///             }
///         })
///         .intensity(Intensity::new(1, Duration::from_secs(60)))
///     };
///     let children = vec![
///         child(0, "a"),
///         child(1, "b").depends_on(["a"]),
///         child(2, "c").depends_on(["b"]),
///     ];
///     let config = SupervisorConfig::new().strategy(strategy);
///     let (supervisor, _join) = SupervisorHandle::spawn(config, children).await?;
///     let mut events = supervisor.subscribe();
///     supervisor.start_all().await?;
///     // Wait for `b` to run again after its restart, then for calm.
///     loop {
///         if let SupervisorEvent::Child(t) = events.recv().await? {
///             if &*t.child == "b" && t.to == ChildState::Running && t.restarts == 1 {
///                 break;
///             }
///         }
///     }
///     let children = supervisor.settled().await?;
///     assert!(children.iter().all(|c| c.state == ChildState::Running));
///     for (i, again) in restarted.into_iter().enumerate() {
///         let runs = starts[i].load(Ordering::SeqCst);
///         assert_eq!(runs, if again { 2 } else { 1 }, "{strategy}: child {i}");
///     }
///     supervisor.shutdown().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Only the crashed child: siblings are independent.
    #[default]
    OneForOne,
    /// The crashed child and every child started after it: later children rely on earlier ones.
    RestForOne,
    /// Every child: the group only works as a whole.
    OneForAll,
}

impl Strategy {
    /// The snake_case word used in configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::RestForOne => "rest_for_one",
            Strategy::OneForAll => "one_for_all",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "one_for_one" => Ok(Strategy::OneForOne),
            "rest_for_one" => Ok(Strategy::RestForOne),
            "one_for_all" => Ok(Strategy::OneForAll),
            _ => Err(UnknownWord {
                found: s.to_string(),
                expected: "one_for_one, rest_for_one, one_for_all",
            }),
        }
    }
}

/// A word that is not one of an enumeration's accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{found}`, expected one of: {expected}")]
#[non_exhaustive]
pub struct UnknownWord {
    /// What was given.
    pub found: String,
    /// The accepted words, comma separated.
    pub expected: &'static str,
}

/// Exponential backoff between restarts of one child.
///
/// The first restart after a healthy run is immediate (a crash is usually a one-off); the
/// `n`-th consecutive one waits `initial × multiplier^(n-2)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the second consecutive restart.
    pub(crate) initial: Duration,
    /// Upper bound of any delay.
    pub(crate) max: Duration,
    /// Growth factor per consecutive restart (1.0 = constant delay).
    pub(crate) multiplier: f64,
    /// A child that ran this long without crashing is healthy again: its next restart is
    /// immediate and the sequence starts over.
    pub(crate) reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Delays from `initial` (before the second consecutive restart) up to `max`, doubling,
    /// and starting over after a minute of healthy running; see [`Backoff::with_multiplier`]
    /// and [`Backoff::with_reset_after`] to change those.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            ..Backoff::default()
        }
    }

    /// Growth factor per consecutive restart (1.0 = constant delay; below 1.0 counts as 1.0).
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// How long a child must run without crashing for its next restart to be immediate again.
    pub fn with_reset_after(mut self, reset_after: Duration) -> Self {
        self.reset_after = reset_after;
        self
    }

    /// Delay before the second consecutive restart.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// Upper bound of any delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Growth factor per consecutive restart.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// How long a child must run without crashing for its next restart to be immediate again.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// The delay before a restart that follows `consecutive` earlier consecutive restarts.
    pub fn delay(&self, consecutive: u32) -> Duration {
        if consecutive == 0 {
            return Duration::ZERO;
        }
        let max = self.max.as_secs_f64();
        let factor = self
            .multiplier
            .max(1.0)
            .powi(consecutive.saturating_sub(1).min(i32::MAX as u32) as i32);
        let secs = self.initial.as_secs_f64() * factor;
        if secs.is_finite() && secs < max {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }
}

/// Restart intensity: at most `max_restarts` restarts within any `window`, as in OTP.
///
/// Beyond it the child is considered broken rather than unlucky, and restarting it again
/// would only burn CPU and flood logs: it is left `failed` while its siblings run on, or,
/// with [`ChildSpec::escalate`](crate::ChildSpec::escalate), the supervisor stops every child
/// and fails itself.
///
/// # Examples
///
/// A task that always fails, allowed two restarts a minute, without backoff delays:
///
/// ```
/// use std::time::Duration;
/// use supervision::{Backoff, ChildSpec, ChildState, Intensity, SupervisorConfig, SupervisorEvent, SupervisorHandle};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let broken = ChildSpec::task("broken", |_ctx| async { Err("cannot open the port".into()) })
///     .intensity(Intensity::new(2, Duration::from_secs(60)))
///     .backoff(Backoff::new(Duration::ZERO, Duration::ZERO));
/// let (supervisor, _join) = SupervisorHandle::spawn(SupervisorConfig::new(), vec![broken]).await?;
/// let mut events = supervisor.subscribe();
/// supervisor.start_all().await?;
/// let gave_up = loop {
///     if let SupervisorEvent::Child(t) = events.recv().await? {
///         if t.to == ChildState::Failed {
///             break t;
///         }
///     }
/// };
/// assert_eq!(gave_up.restarts, 2);
/// assert_eq!(
///     gave_up.reason.as_deref(),
///     Some("gave up after 2 restarts within 60s: cannot open the port")
/// );
/// supervisor.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed inside the window; 0 means a crash is final at once.
    pub(crate) max_restarts: u32,
    /// The sliding window the restarts are counted in.
    pub(crate) window: Duration,
}

impl Intensity {
    /// At most `max_restarts` restarts within any `window` (0: a crash is final at once).
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        Intensity {
            max_restarts,
            window,
        }
    }
}

impl Intensity {
    /// Restarts allowed inside the window.
    pub fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// The sliding window the restarts are counted in.
    pub fn window(&self) -> Duration {
        self.window
    }
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity {
            max_restarts: 3,
            window: Duration::from_secs(60),
        }
    }
}

/// What to do when a child exits: restart type, backoff, intensity, escalation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RestartPolicy {
    /// Whether an exit of this kind is restarted at all.
    pub(crate) restart: Restart,
    /// How long to wait before each restart.
    pub(crate) backoff: Backoff,
    /// When to stop trying.
    pub(crate) intensity: Intensity,
    /// When the intensity is exhausted, take the whole supervisor down (OTP semantics)
    /// instead of leaving this one child `failed` while its siblings keep running.
    pub(crate) escalate: bool,
}

impl RestartPolicy {
    /// The defaults: permanent, default backoff and intensity, no escalation.
    pub fn new() -> Self {
        RestartPolicy::default()
    }

    /// Whether an exit of this kind is restarted at all.
    pub fn restart(&self) -> Restart {
        self.restart
    }

    /// How long to wait before each restart.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// When to stop trying.
    pub fn intensity(&self) -> Intensity {
        self.intensity
    }

    /// Whether an exhausted intensity takes the whole supervisor down.
    pub fn escalate(&self) -> bool {
        self.escalate
    }

    /// Whether an exit of this kind is restarted at all.
    pub fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// How long to wait before each restart.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// When to stop trying.
    pub fn with_intensity(mut self, intensity: Intensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Whether exhausting the intensity takes the whole supervisor down.
    pub fn with_escalate(mut self, escalate: bool) -> Self {
        self.escalate = escalate;
        self
    }
}

/// How a child ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Exit {
    /// It finished on its own, without error.
    Normal,
    /// It crashed, failed to start, was killed, or broke a limit; the error says which.
    Abnormal(ChildError),
}

impl Exit {
    /// The error of an abnormal exit.
    pub fn error(&self) -> Option<&ChildError> {
        match self {
            Exit::Normal => None,
            Exit::Abnormal(error) => Some(error),
        }
    }
}

impl fmt::Display for Exit {
    /// `normal exit`, or the error's text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Normal => f.write_str("normal exit"),
            Exit::Abnormal(error) => error.fmt(f),
        }
    }
}

/// The verdict on one exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Start the child again after this delay (zero = at once).
    Restart {
        /// How long to wait first.
        after: Duration,
    },
    /// Leave it down: the restart type says this exit is final.
    Stop,
    /// Too many restarts inside the window: the child is `failed`, its siblings carry on.
    GiveUp,
    /// Too many restarts and the policy escalates: the supervisor itself must go down.
    Escalate,
}

/// What one child has been through, as far as the decision needs it.
#[derive(Debug, Clone, Default)]
pub struct RestartHistory {
    /// When each restart inside the longest window still relevant happened, oldest first.
    restarts: VecDeque<Instant>,
    /// Consecutive restarts since the child last ran healthily; drives the backoff.
    consecutive: u32,
    /// Since when the current incarnation has been running, if it reached running.
    running_since: Option<Instant>,
    /// Every restart ever, for reporting.
    total: u64,
}

impl RestartHistory {
    /// A child that has never been restarted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record that the child reached running at `now` (starts the healthy-period clock).
    pub fn mark_running(&mut self, now: Instant) {
        self.running_since = Some(now);
    }

    /// Record that the child is not running any more (it exited or is being stopped).
    pub fn mark_down(&mut self) {
        self.running_since = None;
    }

    /// Restarts ever made.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The consecutive-restart count the next restart would follow, taking a healthy
    /// period into account.
    pub fn consecutive(&self, backoff: &Backoff, now: Instant) -> u32 {
        match self.running_since {
            Some(since) if now.saturating_duration_since(since) >= backoff.reset_after => 0,
            _ => self.consecutive,
        }
    }

    /// Restarts made inside `window` before `now`.
    pub fn restarts_within(&self, window: Duration, now: Instant) -> usize {
        // Oldest first: a binary search, so a long crash loop stays cheap to judge.
        let outside = self
            .restarts
            .partition_point(|at| now.saturating_duration_since(*at) >= window);
        self.restarts.len() - outside
    }

    /// Record a restart decided at `now`, under `policy`.
    pub fn record_restart(&mut self, policy: &RestartPolicy, now: Instant) {
        self.consecutive = self.consecutive(&policy.backoff, now).saturating_add(1);
        self.running_since = None;
        self.total = self.total.saturating_add(1);
        self.restarts.push_back(now);
        let window = policy.intensity.window;
        while let Some(oldest) = self.restarts.front() {
            if now.saturating_duration_since(*oldest) >= window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
    }

    /// Forget the restart sequence, e.g. after an operator restarted the child by hand.
    pub fn reset(&mut self) {
        self.restarts.clear();
        self.consecutive = 0;
    }
}

/// The supervisor's whole restart judgement: policy × history × how it exited → decision.
///
/// Pure: the caller records the restart (with [`RestartHistory::record_restart`]) and
/// schedules the timer.
pub fn decide(
    policy: &RestartPolicy,
    history: &RestartHistory,
    exit: &Exit,
    now: Instant,
) -> Decision {
    let wants_restart = match (policy.restart, exit) {
        (Restart::Permanent, _) => true,
        (Restart::Transient, Exit::Abnormal(_)) => true,
        (Restart::Transient, Exit::Normal) | (Restart::Temporary, _) => false,
    };
    if !wants_restart {
        return Decision::Stop;
    }
    let recent = history.restarts_within(policy.intensity.window, now);
    if recent >= policy.intensity.max_restarts as usize {
        return if policy.escalate {
            Decision::Escalate
        } else {
            Decision::GiveUp
        };
    }
    Decision::Restart {
        after: policy
            .backoff
            .delay(history.consecutive(&policy.backoff, now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy(restart: Restart, max_restarts: u32) -> RestartPolicy {
        RestartPolicy {
            restart,
            backoff: Backoff {
                initial: ms(100),
                max: ms(1_000),
                multiplier: 2.0,
                reset_after: Duration::from_secs(10),
            },
            intensity: Intensity {
                max_restarts,
                window: Duration::from_secs(60),
            },
            escalate: false,
        }
    }

    fn crash() -> Exit {
        Exit::Abnormal(ChildError::failed("boom"))
    }

    /// Drives a crash loop: the child crashes right after each restart, 1 ms apart.
    fn crash_loop(policy: &RestartPolicy, crashes: usize) -> Vec<Decision> {
        let start = Instant::now();
        let mut history = RestartHistory::new();
        let mut out = Vec::new();
        for i in 0..crashes {
            let now = start + ms(i as u64);
            let decision = decide(policy, &history, &crash(), now);
            if let Decision::Restart { .. } = decision {
                history.record_restart(policy, now);
            }
            out.push(decision);
        }
        out
    }

    #[test]
    fn backoff_sequence_is_immediate_then_exponential_then_capped() {
        let p = policy(Restart::Permanent, 100);
        let delays: Vec<_> = crash_loop(&p, 7)
            .into_iter()
            .map(|d| match d {
                Decision::Restart { after } => after,
                other => panic!("expected a restart, got {other:?}"),
            })
            .collect();
        assert_eq!(
            delays,
            vec![
                ms(0),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1_000),
                ms(1_000)
            ]
        );
    }

    #[test]
    fn backoff_with_huge_counts_saturates_at_max() {
        let b = Backoff {
            initial: ms(100),
            max: Duration::from_secs(30),
            multiplier: 10.0,
            reset_after: Duration::from_secs(1),
        };
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
        assert_eq!(b.delay(400), Duration::from_secs(30));
    }

    #[test]
    fn multiplier_one_gives_a_constant_delay() {
        let b = Backoff {
            multiplier: 1.0,
            ..Backoff::default()
        };
        assert_eq!(b.delay(1), ms(100));
        assert_eq!(b.delay(9), ms(100));
    }

    #[test]
    fn healthy_period_resets_the_backoff() {
        let p = policy(Restart::Permanent, 100);
        let t0 = Instant::now();
        let mut h = RestartHistory::new();
        for i in 0..3 {
            h.record_restart(&p, t0 + ms(i));
        }
        // Came up and crashed quickly: the sequence continues.
        h.mark_running(t0 + ms(10));
        assert_eq!(
            decide(&p, &h, &crash(), t0 + ms(20)),
            Decision::Restart { after: ms(400) }
        );
        // Ran healthily for reset_after: the next restart is immediate again.
        let later = t0 + ms(10) + Duration::from_secs(10);
        assert_eq!(
            decide(&p, &h, &crash(), later),
            Decision::Restart { after: ms(0) }
        );
        h.record_restart(&p, later);
        h.mark_running(later + ms(1));
        assert_eq!(
            decide(&p, &h, &crash(), later + ms(2)),
            Decision::Restart { after: ms(100) }
        );
    }

    #[test]
    fn intensity_exhausted_gives_up() {
        let p = policy(Restart::Permanent, 3);
        let decisions = crash_loop(&p, 5);
        assert!(matches!(decisions[0], Decision::Restart { .. }));
        assert!(matches!(decisions[2], Decision::Restart { .. }));
        assert_eq!(decisions[3], Decision::GiveUp);
    }

    #[test]
    fn intensity_exhausted_escalates_when_asked() {
        let mut p = policy(Restart::Permanent, 1);
        p.escalate = true;
        let decisions = crash_loop(&p, 2);
        assert_eq!(decisions[1], Decision::Escalate);
    }

    #[test]
    fn zero_restarts_allowed_fails_at_first_crash() {
        let p = policy(Restart::Permanent, 0);
        assert_eq!(crash_loop(&p, 1), vec![Decision::GiveUp]);
    }

    #[test]
    fn restarts_outside_the_window_are_forgotten() {
        let p = policy(Restart::Permanent, 2);
        let t0 = Instant::now();
        let mut h = RestartHistory::new();
        h.record_restart(&p, t0);
        h.record_restart(&p, t0 + ms(1));
        assert_eq!(decide(&p, &h, &crash(), t0 + ms(2)), Decision::GiveUp);
        let after_window = t0 + Duration::from_secs(61);
        assert!(matches!(
            decide(&p, &h, &crash(), after_window),
            Decision::Restart { .. }
        ));
        assert_eq!(h.restarts_within(p.intensity.window, after_window), 0);
    }

    #[test]
    fn permanent_restarts_even_on_normal_exit() {
        let p = policy(Restart::Permanent, 3);
        assert_eq!(
            decide(&p, &RestartHistory::new(), &Exit::Normal, Instant::now()),
            Decision::Restart { after: ms(0) }
        );
    }

    #[test]
    fn transient_restarts_only_after_a_crash() {
        let p = policy(Restart::Transient, 3);
        let h = RestartHistory::new();
        let now = Instant::now();
        assert_eq!(decide(&p, &h, &Exit::Normal, now), Decision::Stop);
        assert_eq!(
            decide(&p, &h, &crash(), now),
            Decision::Restart { after: ms(0) }
        );
    }

    #[test]
    fn temporary_is_never_restarted() {
        let p = policy(Restart::Temporary, 3);
        let h = RestartHistory::new();
        let now = Instant::now();
        assert_eq!(decide(&p, &h, &Exit::Normal, now), Decision::Stop);
        assert_eq!(decide(&p, &h, &crash(), now), Decision::Stop);
    }

    #[test]
    fn words_parse_in_any_case_and_round_trip() {
        for s in [
            Strategy::OneForOne,
            Strategy::RestForOne,
            Strategy::OneForAll,
        ] {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
        }
        for r in [Restart::Permanent, Restart::Transient, Restart::Temporary] {
            assert_eq!(r.as_str().to_uppercase().parse::<Restart>(), Ok(r));
        }
        let err = "sometimes".parse::<Restart>().unwrap_err();
        assert!(err.to_string().contains("permanent, transient, temporary"));
    }
}
