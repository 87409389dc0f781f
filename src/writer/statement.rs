//! A DDL statement for one backend, in order with its writes: the query
//! path hands it here and gets back what became of it; the spool, its
//! delivered position and the backend's counters stay the writer's.
//!
//! A backend that is up runs the statement once every write acknowledged
//! before it has been delivered there (waiting at most the time given);
//! otherwise the statement is appended to the backend's spool as a
//! statement record, which its sender runs in order with the writes (a
//! statement record is a barrier there), and counted in
//! `statements_pending` until it has run.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{AckError, Writers};
use crate::cluster::Backend;
use crate::log;

/// What became of a statement handed to
/// [`Writers::run_or_queue_statement`].
#[derive(Debug, PartialEq, Eq)]
pub enum StatementOutcome<T> {
    /// The backend was up and caught up, and ran it: its answer.
    Ran(T),
    /// Appended to the backend's spool, to run when the backend is back.
    Queued,
}

/// Why [`Writers::run_or_queue_statement`] gives no outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum StatementError<E> {
    /// The backend refused the statement (the client's answer).
    Refused(E),
    /// The statement could not be queued either.
    NotQueued(AckError),
}

impl Writers {
    /// Runs a statement on `backend`, or queues it in its spool.
    ///
    /// When the backend is up and delivers, within `wait`, everything
    /// acknowledged before this call, `run` sends the statement: `Ok(Some)`
    /// is the backend's answer, `Ok(None)` a failure to get one (the
    /// statement is queued instead), `Err` a refusal, returned as is.
    /// Otherwise the statement (`text`, on database `db`) is appended to the
    /// spool and `Queued` returned once the append is done.
    pub fn run_or_queue_statement<T, E>(
        &self,
        backend: &Backend,
        db: &str,
        text: &str,
        wait: Duration,
        run: impl FnOnce() -> Result<Option<T>, E>,
    ) -> Result<StatementOutcome<T>, StatementError<E>> {
        let caught_up = backend.is_active()
            && self
                .spool(backend.id)
                .is_some_and(|sp| sp.wait_delivered(sp.head(), wait));
        if caught_up {
            if let Some(answer) = run().map_err(StatementError::Refused)? {
                return Ok(StatementOutcome::Ran(answer));
            }
        }
        self.queue_statement(backend.id, db, text)
            .map_err(StatementError::NotQueued)?;
        backend
            .stats
            .statements_pending
            .fetch_add(1, Ordering::Relaxed);
        log!(
            "backend {} is down or behind: queued {text:?} in its spool",
            backend.name
        );
        Ok(StatementOutcome::Queued)
    }
}
