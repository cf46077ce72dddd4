//! The crate's errors: what a supervisor refuses ([`SupervisionError`]), why a child could
//! not start ([`StartError`]) and why a child's incarnation ended badly ([`ChildError`]).
//!
//! The text of each (its `Display`) is the sentence people see — in logs, in a transition's
//! reason, in whatever an embedder shows — and includes the cause's own text; the typed
//! cause is kept beside it, reachable by matching the variant or through `source()`.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An error of any type, shared: exits are cloned into every snapshot and event that reports
/// them, and most errors are not `Clone`.
pub type SharedError = Arc<dyn Error + Send + Sync + 'static>;

/// An error of any type, boxed: what a task child or a readiness future fails with. Anything
/// that is an error converts into it with `?` or `.into()`, and so do `&str` and `String`.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// What can go wrong when building or talking to a supervisor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisionError {
    /// The children's dependencies form a cycle; the ids walk it, first and last equal.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A child depends on an id no child has.
    #[error("child `{child}` depends on unknown child `{dependency}`")]
    UnknownDependency {
        /// The child that names the dependency.
        child: String,
        /// The missing id.
        dependency: String,
    },
    /// Two children share an id.
    #[error("duplicate child id `{0}`")]
    DuplicateChild(String),
    /// No child has this id.
    #[error("unknown child `{0}`")]
    UnknownChild(String),
    /// The child cannot be removed while others depend on it.
    #[error("child `{child}` is needed by {}", .dependents.join(", "))]
    HasDependents {
        /// The child asked to be removed.
        child: String,
        /// Those that depend on it.
        dependents: Vec<String>,
    },
    /// The child is being stopped to be removed and takes no other orders.
    #[error("child `{0}` is being removed")]
    Removing(String),
    /// The supervisor is stopping all its children and takes no other orders.
    #[error("supervisor is shutting down")]
    ShuttingDown,
    /// ractor could not spawn the supervisor actor.
    #[error("cannot spawn supervisor: {0}")]
    Spawn(#[source] SpawnError),
    /// The supervisor actor is gone (stopped or escalated).
    #[error("supervisor is not running")]
    Unavailable,
}

/// ractor's error when it could not spawn a supervisor: shared, so [`SupervisionError`]
/// stays `Clone`; two are equal when they are the same error.
#[derive(Debug, Clone)]
pub struct SpawnError(Arc<ractor::SpawnErr>);

impl SpawnError {
    pub(crate) fn new(error: ractor::SpawnErr) -> Self {
        SpawnError(Arc::new(error))
    }

    /// ractor's error.
    pub fn get_ref(&self) -> &ractor::SpawnErr {
        &self.0
    }
}

impl PartialEq for SpawnError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SpawnError {}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for SpawnError {
    /// Transparent: ractor's text is this one's, so its cause comes next.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Why a worker could not start its child; the supervisor counts it as an abnormal exit
/// ([`ChildError::Start`]).
///
/// It wraps the worker's own error, whatever its type: its text is that error's text, and
/// [`StartError::get_ref`] gives the error back to inspect or downcast.
///
/// # Examples
///
/// ```
/// use supervision::StartError;
///
/// let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such binary");
/// let error = StartError::new(missing);
/// assert_eq!(error.to_string(), "no such binary");
/// assert!(error.get_ref().downcast_ref::<std::io::Error>().is_some());
/// assert_eq!(StartError::from("no such binary").to_string(), "no such binary");
/// ```
#[derive(Debug, Clone)]
pub struct StartError(SharedError);

impl StartError {
    /// Wraps any error, or a message (`&str`, `String`).
    pub fn new(error: impl Into<BoxError>) -> Self {
        StartError(Arc::from(error.into()))
    }

    /// The worker's error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for StartError {
    /// Transparent: the wrapped error's text is this one's, so its cause comes next.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

impl From<ractor::SpawnErr> for StartError {
    fn from(err: ractor::SpawnErr) -> Self {
        StartError::new(err)
    }
}

impl From<String> for StartError {
    fn from(message: String) -> Self {
        StartError::new(message)
    }
}

impl From<&str> for StartError {
    fn from(message: &str) -> Self {
        StartError::new(message)
    }
}

/// Why an incarnation of a child ended abnormally, or never came up: the reason of an
/// [`Exit::Abnormal`](crate::Exit::Abnormal).
///
/// Its text is what a transition's reason says (`killed`, `panicked: …`, `start failed: …`,
/// `not running within 30s`, or the child's own error's text).
///
/// # Examples
///
/// ```
/// use supervision::{ChildError, Exit};
///
/// let exit = Exit::Abnormal(ChildError::Killed);
/// assert!(matches!(exit.error(), Some(ChildError::Killed)));
/// assert_eq!(exit.to_string(), "killed");
/// assert_eq!(ChildError::failed("disk full").to_string(), "disk full");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChildError {
    /// Killed: its actor was killed (by the supervisor after the stop grace, or by anyone
    /// else), or its task was aborted.
    Killed,
    /// Its task panicked; the panic's message (`(no message)` when it had none).
    Panicked(String),
    /// Its actor failed (a handler returned an error or panicked) or its task returned an
    /// error: that error.
    Failed(SharedError),
    /// Its worker could not start it.
    Start(StartError),
    /// It did not become running within its start timeout.
    StartTimeout(Duration),
    /// Its readiness future failed: that error.
    NotReady(SharedError),
}

impl ChildError {
    /// A [`ChildError::Failed`] from any error or message.
    pub fn failed(error: impl Into<BoxError>) -> Self {
        ChildError::Failed(Arc::from(error.into()))
    }
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildError::Killed => f.write_str("killed"),
            ChildError::Panicked(message) => write!(f, "panicked: {message}"),
            ChildError::Failed(error) | ChildError::NotReady(error) => error.fmt(f),
            ChildError::Start(error) => write!(f, "start failed: {error}"),
            ChildError::StartTimeout(timeout) => {
                write!(f, "not running within {}", human(*timeout))
            }
        }
    }
}

impl Error for ChildError {
    /// The text of a wrapped error is part of this one's, so the chain goes on with that
    /// error's own cause: a chain printer never repeats a line.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ChildError::Failed(error) | ChildError::NotReady(error) => error.source(),
            ChildError::Start(error) => error.source(),
            ChildError::Killed | ChildError::Panicked(_) | ChildError::StartTimeout(_) => None,
        }
    }
}

/// `error: cause: cause …`: an error with every source after it, as one line for a log or a
/// terminal. The crate's own errors continue their chain at the wrapped error's cause, so no
/// line repeats.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A duration as people write it in a reason: whole seconds (`30s`), else milliseconds.
pub(crate) fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server shows these texts (agent states, alerts): they must not change.
    #[test]
    fn child_errors_read_as_they_always_have() {
        let cases = [
            (ChildError::Killed, "killed"),
            (ChildError::Panicked("boom".into()), "panicked: boom"),
            (
                ChildError::failed("exited with code 3"),
                "exited with code 3",
            ),
            (
                ChildError::Start(StartError::from("no such binary")),
                "start failed: no such binary",
            ),
            (
                ChildError::StartTimeout(Duration::from_millis(30)),
                "not running within 30ms",
            ),
            (
                ChildError::StartTimeout(Duration::from_secs(2)),
                "not running within 2s",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    /// A wrapped error's text is already in the wrapper's: the chain goes on with its cause.
    #[test]
    fn the_source_chain_does_not_repeat_the_wrapped_text() {
        let io = std::io::Error::other("permission denied");
        let outer: BoxError = Box::new(Wrapped(io));
        let error = ChildError::Start(StartError::new(outer));
        assert_eq!(
            error.to_string(),
            "start failed: cannot exec: permission denied"
        );
        let cause = error.source().map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("permission denied"));
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cannot exec: {}", self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }
}
