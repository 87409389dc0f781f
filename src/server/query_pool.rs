//! The query pool: threads for requests that wait on backends.
//!
//! A worker answers a write, a ping or `/health` itself: that work is CPU
//! and local disk, so one worker per core keeps the cores busy (the default
//! has one more, so that with every other worker waiting on a backend one is
//! still free). A query (and
//! `/replica`, a Prometheus remote read, `/health?stats=true`) mostly waits for a backend's answer, for as long as the
//! backend takes (up to `query_timeout`). Were it answered on the worker,
//! two slow queries would stop every write behind them on a 2-core machine,
//! and concurrent clients would queue behind each other's round trips. So a
//! worker answers a query itself only while at least one other worker is
//! left that is not waiting on a backend (see [`QueryPool::wait_here`]);
//! otherwise it hands the request to this pool and goes back to the
//! listener. A query answered in place saves the hand-over: thread wakes
//! that, on a saturated 2-core machine, add about a third to the proxy's
//! CPU time for a small query. One handed over never holds up a write.
//!
//! A request handed over goes straight to the thread that became idle last
//! (its stack and caches are the warmest), or starts a new thread, up to
//! `query_threads`; beyond that, requests wait in line in arrival order, and
//! a thread that ends a request takes the next in line before it goes idle.
//! Threads stay for the life of the pool (an idle one costs a parked
//! stack). A hand-over wakes exactly one thread and never spins: on a small
//! machine the cores are better spent on the queries.
//!
//! Invariants: a request handed over is answered by exactly one thread; a
//! thread is either answering, or idle with an empty slot, and requests wait
//! in line only while no thread is idle. The visit of a request's connection
//! (see [`super::connections`]) begins on the worker, so the janitor counts
//! it as in service while it waits in line, and ends when the answer is
//! sent. [`QueryPool::stop`] lets the threads answer
//! what is in line, then joins them, so none holds the shared state after
//! shutdown.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::State;
use crate::log;
use crate::write::endpoint::WriteScratch;

/// A request handed over, with the peer whose visit it carries.
struct Job {
    request: tiny_http::Request,
    peer: Option<SocketAddr>,
}

/// Where an idle thread waits for its next job.
#[derive(Default)]
struct Slot {
    /// `Some` once a job is handed over; `None` with `closed` set: stop.
    job: Mutex<Option<Job>>,
    ready: Condvar,
}

#[derive(Default)]
struct Line {
    /// Idle threads, the one idle longest first.
    idle: Vec<Arc<Slot>>,
    /// Requests no thread was free for, oldest first.
    waiting: VecDeque<Job>,
    /// Threads started.
    live: usize,
    /// No more jobs will come.
    closed: bool,
}

/// What the pool's threads share with it.
struct Shared {
    line: Mutex<Line>,
    state: Arc<State>,
}

impl Shared {
    fn line(&self) -> MutexGuard<'_, Line> {
        // A panic while holding the lock leaves the line consistent (every
        // change is a single push or pop), so a poisoned lock is used as is.
        self.line.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// See the module documentation.
pub struct QueryPool {
    shared: Arc<Shared>,
    max: usize,
    /// Workers answering a query in place, and how many may at once.
    in_place: AtomicUsize,
    in_place_max: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl QueryPool {
    /// A pool of at most `max` threads (at least one), none started yet,
    /// for `workers` workers.
    pub fn new(state: Arc<State>, max: usize, workers: usize) -> QueryPool {
        QueryPool {
            in_place: AtomicUsize::new(0),
            in_place_max: workers.saturating_sub(1),
            shared: Arc::new(Shared {
                line: Mutex::new(Line::default()),
                state,
            }),
            max: max.max(1),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Whether a request for `url` waits on backends and belongs here
    /// (`/health?stats=true` surveys every backend).
    pub fn takes(url: &str) -> bool {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        match path {
            "/query" | "/replica" | "/api/v2/query" | "/api/v1/prom/read" => true,
            "/health" => query.split('&').any(|kv| kv == "stats=true"),
            _ => false,
        }
    }

    /// Leave for the calling worker to answer a query itself, held until the
    /// guard is dropped; `None` when that would leave no worker free of
    /// backends (always, with a single worker).
    pub fn wait_here(&self) -> Option<InPlace<'_>> {
        self.in_place
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.in_place_max).then_some(n + 1)
            })
            .ok()
            .map(|_| InPlace { pool: self })
    }

    /// Hands `request` over; its visit of `peer` has begun. Gives it back
    /// when no thread can take it (none runs and none could be started), so
    /// the worker answers it itself.
    #[must_use]
    pub fn submit(
        &self,
        request: tiny_http::Request,
        peer: Option<SocketAddr>,
    ) -> Option<(tiny_http::Request, Option<SocketAddr>)> {
        let job = Job { request, peer };
        let mut line = self.shared.line();
        if let Some(slot) = line.idle.pop() {
            drop(line);
            let mut mine = slot.job.lock().unwrap_or_else(PoisonError::into_inner);
            *mine = Some(job);
            slot.ready.notify_one();
            return None;
        }
        if line.live >= self.max {
            line.waiting.push_back(job);
            return None;
        }
        line.live += 1;
        let n = line.live;
        drop(line);
        let shared = Arc::clone(&self.shared);
        let first = Arc::new(Mutex::new(Some(job)));
        let handed = Arc::clone(&first);
        let spawned = std::thread::Builder::new()
            .name(format!("query-{n}"))
            .spawn(move || {
                let job = handed.lock().ok().and_then(|mut j| j.take());
                serve(&shared, job);
            });
        match spawned {
            Ok(handle) => {
                if let Ok(mut threads) = self.threads.lock() {
                    threads.push(handle);
                }
                None
            }
            Err(e) => {
                log!("cannot start a query thread ({} running): {e}", n - 1);
                let mut line = self.shared.line();
                line.live -= 1;
                let job = first.lock().ok().and_then(|mut j| j.take())?;
                if line.live == 0 {
                    return Some((job.request, job.peer));
                }
                // A running thread takes it when it is done.
                line.waiting.push_back(job);
                None
            }
        }
    }

    /// Lets the threads answer what is in line, then waits for them.
    pub fn stop(self) {
        let idle = {
            let mut line = self.shared.line();
            line.closed = true;
            std::mem::take(&mut line.idle)
        };
        for slot in idle {
            let _guard = slot.job.lock().unwrap_or_else(PoisonError::into_inner);
            slot.ready.notify_one();
        }
        let threads = self.threads.into_inner().unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A worker's leave to answer a query itself; see [`QueryPool::wait_here`].
pub struct InPlace<'a> {
    pool: &'a QueryPool,
}

impl Drop for InPlace<'_> {
    fn drop(&mut self) {
        self.pool.in_place.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A pool thread: answers `first`, then what is in line or handed to it
/// while idle, until the pool is closed.
fn serve(shared: &Shared, first: Option<Job>) {
    let state = &shared.state;
    let mut scratch = WriteScratch::new(Arc::clone(&state.cluster));
    let slot = Arc::new(Slot::default());
    let mut next = first;
    loop {
        if let Some(job) = next.take() {
            let visit = state.conns.resume(job.peer);
            super::serve(state, &mut scratch, job.request, visit);
        }
        let mut line = shared.line();
        if let Some(job) = line.waiting.pop_front() {
            next = Some(job);
            continue;
        }
        if line.closed {
            return;
        }
        line.idle.push(Arc::clone(&slot));
        // The slot is taken before the line is let go, so a job handed to
        // it in between waits in the slot.
        let mut mine = slot.job.lock().unwrap_or_else(PoisonError::into_inner);
        drop(line);
        while mine.is_none() {
            if shared.line().closed {
                return;
            }
            mine = slot
                .ready
                .wait(mine)
                .unwrap_or_else(PoisonError::into_inner);
        }
        next = mine.take();
    }
}

#[cfg(test)]
mod tests {
    use super::QueryPool;

    #[test]
    fn requests_that_wait_on_backends_belong_to_the_pool() {
        for url in [
            "/query?q=x",
            "/query",
            "/replica?db=a&mm=b",
            "/health?stats=true",
        ] {
            assert!(QueryPool::takes(url), "{url}");
        }
        for url in [
            "/health",
            "/health?stats=false",
            "/write?db=a",
            "/ping",
            "/healthz",
        ] {
            assert!(!QueryPool::takes(url), "{url}");
        }
        assert!(QueryPool::takes("/health?pretty=true&stats=true"));
    }
}
