//! The queue between a backend's writer thread and its sender thread:
//! sealed batches in arrival order, bounded in bytes.
//!
//! Until the on-disk spool lands this queue lives in memory, so it is capped
//! by `max_backlog_size`: a batch that does not fit is refused, and the
//! writer counts and logs the loss. The sender takes batches one at a time.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::write::batch::Batch;

#[derive(Default)]
struct Inner {
    queue: VecDeque<Batch>,
    /// Bytes queued.
    bytes: usize,
    closed: bool,
}

/// A bounded FIFO of batches with one producer and one consumer.
pub struct Backlog {
    inner: Mutex<Inner>,
    ready: Condvar,
    max_bytes: usize,
}

/// What [`Backlog::take`] found.
pub enum Taken {
    Batch(Batch),
    /// Nothing arrived within the timeout.
    Empty,
    /// Closed and drained: the sender may stop.
    Closed,
}

impl Backlog {
    pub fn new(max_bytes: usize) -> Backlog {
        Backlog {
            inner: Mutex::new(Inner::default()),
            ready: Condvar::new(),
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue half-updated
        // (every update is a single push/pop plus a counter), so keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `batch`, or gives it back when it would exceed the cap.
    pub fn push(&self, batch: Batch) -> Result<(), Batch> {
        let mut inner = self.lock();
        let size = batch.lines.len();
        if inner.bytes + size > self.max_bytes && inner.bytes > 0 {
            return Err(batch);
        }
        inner.bytes += size;
        inner.queue.push_back(batch);
        drop(inner);
        self.ready.notify_one();
        Ok(())
    }

    /// Waits up to `timeout` for the oldest batch.
    pub fn take(&self, timeout: Duration) -> Taken {
        let mut inner = self.lock();
        if inner.queue.is_empty() && !inner.closed {
            inner = match self.ready.wait_timeout(inner, timeout) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
        match inner.queue.pop_front() {
            Some(b) => {
                inner.bytes -= b.lines.len();
                Taken::Batch(b)
            }
            None if inner.closed => Taken::Closed,
            None => Taken::Empty,
        }
    }

    /// Whether the writer has closed the queue.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Batches and bytes waiting.
    pub fn depth(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.queue.len(), inner.bytes)
    }

    /// No more pushes will come.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn batch(n: usize) -> Batch {
        Batch {
            db: Arc::from("db"),
            rp: Arc::from(""),
            lines: vec![b'x'; n],
            points: 1,
        }
    }

    #[test]
    fn keeps_order_and_refuses_past_the_cap() {
        let q = Backlog::new(10);
        assert!(q.push(batch(6)).is_ok());
        assert!(q.push(batch(5)).is_err());
        assert!(q.push(batch(4)).is_ok());
        let Taken::Batch(first) = q.take(Duration::ZERO) else {
            panic!("empty")
        };
        assert_eq!(first.lines.len(), 6);
        assert!(q.push(batch(1)).is_ok());
        assert_eq!(q.depth(), (2, 5));
        q.close();
        assert!(matches!(q.take(Duration::ZERO), Taken::Batch(_)));
        assert!(matches!(q.take(Duration::ZERO), Taken::Batch(_)));
        assert!(matches!(q.take(Duration::ZERO), Taken::Closed));
    }

    #[test]
    fn one_oversized_batch_is_taken_when_empty() {
        let q = Backlog::new(10);
        assert!(q.push(batch(50)).is_ok());
        assert!(matches!(q.take(Duration::ZERO), Taken::Batch(_)));
    }
}
