//! Task children: how one incarnation runs, reports its end, and is stopped or killed.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use ractor::ActorRef;
use tokio::task::AbortHandle;

use super::{Msg, SupervisorMsg};
use crate::error::ChildError;
use crate::policy::Exit;
use crate::spec::{BoxFuture, StopSignal, TaskResult};
use crate::ChildId;

/// A running task child's incarnation, as the supervisor holds it. Dropping it aborts the
/// task, so a task never outlives its supervisor's state (ractor runs no `post_stop` for a
/// supervisor that panicked or was killed); once the task has ended the abort does nothing.
pub(super) struct TaskRun {
    pub(super) stop: StopSignal,
    pub(super) abort: AbortHandle,
}

impl Drop for TaskRun {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// The timer that kills a stopping incarnation after its grace. Dropping it cancels it: a
/// stop of 100,000 children would otherwise leave as many sleeping timer tasks behind for
/// the whole grace.
pub(super) struct KillTimer(pub(super) AbortHandle);

impl Drop for KillTimer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Rides inside a task child's task and tells the supervisor how the task ended when it is
/// dropped: after the future returned or panicked (`exit` set), or when the task was aborted
/// mid-flight (`exit` unset: killed). A report to a supervisor that is gone is lost.
pub(super) struct TaskReport {
    pub(super) supervisor: ActorRef<SupervisorMsg>,
    pub(super) child: ChildId,
    pub(super) generation: u64,
    pub(super) exit: Option<Exit>,
}

impl Drop for TaskReport {
    fn drop(&mut self) {
        let exit = self
            .exit
            .take()
            .unwrap_or(Exit::Abnormal(ChildError::Killed));
        let _ = self.supervisor.cast(SupervisorMsg(Msg::TaskExited {
            child: self.child.clone(),
            generation: self.generation,
            exit,
        }));
    }
}

/// One incarnation of a task child as spawned: its future, with panics caught, and the
/// report of its end. Fields drop in order, so the future — and all it holds — is gone
/// before the report leaves: a supervisor that hears of the end knows the work has stopped.
pub(super) struct TaskRunner {
    run: futures::future::CatchUnwind<AssertUnwindSafe<BoxFuture<TaskResult>>>,
    report: TaskReport,
}

impl TaskRunner {
    pub(super) fn new(run: BoxFuture<TaskResult>, report: TaskReport) -> Self {
        TaskRunner {
            run: AssertUnwindSafe(run).catch_unwind(),
            report,
        }
    }
}

impl Future for TaskRunner {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let exit = match std::task::ready!(self.run.poll_unpin(cx)) {
            Ok(Ok(())) => Exit::Normal,
            Ok(Err(error)) => Exit::Abnormal(ChildError::Failed(error.into())),
            Err(panic) => Exit::Abnormal(ChildError::Panicked(panic_message(&*panic).to_string())),
        };
        self.report.exit = Some(exit);
        Poll::Ready(())
    }
}

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
    }
}
