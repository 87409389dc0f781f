//! The databases the backends have, so that a write to a database that
//! exists nowhere gets influxd's `404 database not found` instead of a 204
//! and a batch parked later by every sender.
//!
//! The known set is the union of every backend's last answer to
//! `SHOW DATABASES` (asked with the backend's own credentials) and the
//! databases created through the proxy that no backend has listed yet (a
//! `CREATE DATABASE` queued in a spool behind a backlog). A backend that is
//! down keeps its last answer: a database it had is still known, so its
//! writes are spooled for it as before. `DROP DATABASE` through the proxy
//! removes the name at once.
//!
//! Where the lists come from:
//! - the backend's pinger ([`super::pinger`]), after a successful ping,
//!   when the backend was just (re)activated or its list is older than
//!   [`LIST_AGE`]. Not at every ping: influxd logs each query it runs
//!   (`query-log-enabled` is on by default), and a list that is a few
//!   seconds old only errs one way, see next;
//! - a miss: a write naming a database outside the known set asks every live
//!   backend at once (at most [`MISS_TIMEOUT`] each) before the 404, so a
//!   database created directly on the backends a moment ago is accepted.
//!   So a list up to [`LIST_AGE`] old errs only by still naming a database
//!   dropped directly on the backends: its writes get the old behaviour
//!   (204, then parked by the sender) until the next list.
//!
//! When a miss refresh gets no list from any live backend (all down, or
//! backends that answer `SHOW DATABASES` without one), writes are admitted
//! without asking for [`LIST_AGE`] or until some list arrives: a cluster
//! whose backends keep their databases to themselves must not pay a round
//! of questions for every write.
//!
//! Only one miss refresh runs at a time; the misses that arrive while it
//! runs share the next one (which starts after they arrived, so it sees
//! what they may expect). A client that keeps writing to a missing database
//! thus costs the live backends one `SHOW DATABASES` after another, never
//! several at once. When no live backend answers a miss refresh (all down,
//! or no answer in time) the write is admitted, as before this check
//! existed: it waits in the spools like any write to a down backend.
//!
//! A write for a known database costs a read lock (readers never wait for
//! each other; the set changes only when a list does) and one hash lookup:
//! 30 to 50 ns measured, see [`Databases::admits`].

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use fxhash::FxHashSet;

use super::Backend;
use crate::http_client::{self, BackendRequest};

/// A backend's list is fetched again by its pinger past this age.
pub const LIST_AGE: Duration = Duration::from_secs(10);

/// How long a miss refresh waits for each live backend's list.
pub const MISS_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest `SHOW DATABASES` answer read.
const MAX_ANSWER: u64 = 16 << 20;

/// The databases of the cluster, as far as the backends told.
pub struct Databases {
    /// What writes are checked against: the union of `sources`.
    known: RwLock<FxHashSet<String>>,
    sources: Mutex<Sources>,
    /// Every backend, by id, for the miss refresh.
    backends: Vec<Arc<Backend>>,
    /// The miss refresh's client (keep-alive, [`MISS_TIMEOUT`]).
    agent: ureq::Agent,
    misses: Mutex<Misses>,
    miss_done: Condvar,
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Databases")
            .field("known", &*read(&self.known))
            .finish_non_exhaustive()
    }
}

/// Where the known databases come from.
#[derive(Debug, Default)]
struct Sources {
    /// Per backend id: its last `SHOW DATABASES` answer and when it came.
    lists: Vec<Option<(FxHashSet<String>, Instant)>>,
    /// Created through the proxy and listed by no backend yet.
    created: FxHashSet<String>,
}

impl Sources {
    fn union(&self) -> FxHashSet<String> {
        let mut all = self.created.clone();
        for (list, _) in self.lists.iter().flatten() {
            all.extend(list.iter().cloned());
        }
        all
    }
}

/// The miss refreshes started and finished (numbered from 1); one runs
/// while `finished < started`.
#[derive(Debug, Default)]
struct Misses {
    started: u64,
    finished: u64,
    /// Whether some backend answered the last finished refresh.
    answered: bool,
    /// Set when a refresh found no backend that answers with a list (all
    /// down, or backends that keep their databases to themselves): until
    /// then, or until some list arrives, misses are admitted without
    /// asking, so such a cluster does not pay a round of `SHOW DATABASES`
    /// (and a thread per backend) for every write.
    blind_until: Option<Instant>,
}

impl Databases {
    /// Nothing known yet: the first write of each database refreshes, and
    /// the pingers fill the lists within their first ping.
    pub fn new(backends: &[Arc<Backend>]) -> Databases {
        Databases {
            known: RwLock::default(),
            sources: Mutex::new(Sources {
                lists: vec![None; backends.len()],
                created: FxHashSet::default(),
            }),
            backends: backends.to_vec(),
            agent: http_client::agent(MISS_TIMEOUT, 16 * 1024, 16 * 1024),
            misses: Mutex::default(),
            miss_done: Condvar::new(),
        }
    }

    /// Whether a write to `db` may be taken: `db` is known, or a refresh of
    /// the live backends' lists finds it, or no backend could be asked.
    pub fn admits(&self, db: &str) -> bool {
        if self.is_known(db) {
            return true;
        }
        // No live backend answered: admit, as before this check existed.
        self.blind() || !self.refresh_live() || self.is_known(db)
    }

    /// Whether a recent refresh found no backend to ask (see
    /// `Misses::blind_until`).
    fn blind(&self) -> bool {
        lock(&self.misses)
            .blind_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// Whether `db` is in the known set, without asking anyone.
    pub fn is_known(&self, db: &str) -> bool {
        read(&self.known).contains(db)
    }

    /// The pinger's call after a successful ping of `backend`
    /// (`was_active`: its previous verdict): fetches the backend's list
    /// when it just came back or its list is older than [`LIST_AGE`].
    pub fn after_ping(&self, backend: &Backend, agent: &ureq::Agent, was_active: bool) {
        let fresh = lock(&self.sources)
            .lists
            .get(backend.id)
            .and_then(|l| l.as_ref())
            .is_some_and(|(_, at)| at.elapsed() < LIST_AGE);
        if was_active && fresh {
            return;
        }
        if let Some(list) = show_databases(agent, backend) {
            self.record(backend.id, list);
        }
    }

    /// `CREATE DATABASE db` succeeded through the proxy (or is queued).
    pub fn created(&self, db: &str) {
        let mut sources = lock(&self.sources);
        if sources.created.insert(db.to_string()) {
            self.publish(&sources);
        }
    }

    /// `DROP DATABASE db` succeeded through the proxy (or is queued).
    pub fn dropped(&self, db: &str) {
        let mut sources = lock(&self.sources);
        sources.created.remove(db);
        for (list, _) in sources.lists.iter_mut().flatten() {
            list.remove(db);
        }
        self.publish(&sources);
    }

    /// Refreshes the lists of the live backends, or waits for a refresh
    /// that started after this call; says whether some backend answered.
    fn refresh_live(&self) -> bool {
        let deadline = Instant::now() + 2 * MISS_TIMEOUT;
        let mut misses = lock(&self.misses);
        let wanted = misses.started + 1;
        loop {
            if misses.finished >= wanted {
                return misses.answered;
            }
            if misses.finished == misses.started {
                misses.started += 1;
                let number = misses.started;
                drop(misses);
                let answered = self.ask_live();
                let mut misses = lock(&self.misses);
                misses.finished = number;
                misses.answered = answered;
                if !answered {
                    misses.blind_until = Some(Instant::now() + LIST_AGE);
                }
                self.miss_done.notify_all();
                return answered;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            misses = self
                .miss_done
                .wait_timeout(misses, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Asks every live backend for its list at once; records the answers.
    fn ask_live(&self) -> bool {
        let live: Vec<&Arc<Backend>> = self.backends.iter().filter(|b| b.is_active()).collect();
        let lists: Vec<Option<FxHashSet<String>>> = std::thread::scope(|s| {
            let asked: Vec<_> = live
                .iter()
                .map(|b| {
                    std::thread::Builder::new()
                        .name(format!("databases-{}", b.name))
                        .spawn_scoped(s, || show_databases(&self.agent, b))
                })
                .collect();
            asked
                .into_iter()
                .zip(&live)
                .map(|(thread, b)| match thread {
                    Ok(handle) => handle.join().ok().flatten(),
                    // No thread to be had: ask from here.
                    Err(_) => show_databases(&self.agent, b),
                })
                .collect()
        });
        let mut answered = false;
        for (b, list) in live.iter().zip(lists) {
            if let Some(list) = list {
                self.record(b.id, list);
                answered = true;
            }
        }
        answered
    }

    /// Stores backend `id`'s list; publishes the known set if it changed.
    /// A list ends a blind spell: misses are asked about again.
    fn record(&self, id: usize, list: FxHashSet<String>) {
        lock(&self.misses).blind_until = None;
        let mut sources = lock(&self.sources);
        let Some(slot) = sources.lists.get_mut(id) else {
            return;
        };
        let same = slot.as_ref().is_some_and(|(old, _)| *old == list);
        if same {
            if let Some((_, at)) = slot {
                *at = Instant::now();
            }
            return;
        }
        sources.created.retain(|db| !list.contains(db));
        sources.lists[id] = Some((list, Instant::now()));
        self.publish(&sources);
    }

    /// Replaces the known set with the union of `sources` if it differs.
    /// Called with `sources` locked, so publications come in order.
    fn publish(&self, sources: &MutexGuard<'_, Sources>) {
        let union = sources.union();
        if *read(&self.known) != union {
            *self.known.write().unwrap_or_else(PoisonError::into_inner) = union;
        }
    }
}

/// `backend`'s databases (`SHOW DATABASES`), or `None` when it gives no
/// readable answer (down, refused credentials, error). Not logged: a miss
/// may ask at every request, and the ping already reports a backend down.
pub fn show_databases(agent: &ureq::Agent, backend: &Backend) -> Option<FxHashSet<String>> {
    let req = BackendRequest::get(backend, "/query", &[("q", "SHOW DATABASES")]);
    let mut resp = req.send(agent, &backend.url).ok()?;
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    parse_databases(&body)
}

/// The names of a `SHOW DATABASES` answer. A backend without databases
/// answers the series without `values`: an empty list. An answer without
/// the series is no answer: a 404 is given on a clear list only.
fn parse_databases(body: &str) -> Option<FxHashSet<String>> {
    let answer: serde_json::Value = serde_json::from_str(body).ok()?;
    let series = answer.pointer("/results/0/series/0")?;
    let rows = series
        .get("values")
        .and_then(|v| v.as_array())
        .map_or(&[][..], Vec::as_slice);
    Some(
        rows.iter()
            .filter_map(|row| row.get(0)?.as_str().map(String::from))
            .collect(),
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> FxHashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn answers_are_read_as_influxd_gives_them() {
        let empty = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"]}]}]}"#;
        assert_eq!(parse_databases(empty), Some(set(&[])));
        let two = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["a\"b"]]}]}]}"#;
        assert_eq!(parse_databases(two), Some(set(&["_internal", "a\"b"])));
        let refused = r#"{"results":[{"statement_id":0,"error":"forbidden"}]}"#;
        assert_eq!(parse_databases(refused), None);
        let no_series = r#"{"results":[{"statement_id":0}]}"#;
        assert_eq!(parse_databases(no_series), None);
        assert_eq!(parse_databases(r#"{"error":"x"}"#), None);
        assert_eq!(parse_databases("not json"), None);
    }

    fn databases(n: usize) -> Databases {
        let cfg = crate::config::Config::from_json(
            r#"{"circles":[{"name":"c","backends":[{"name":"a","url":"http://127.0.0.1:1"},{"name":"b","url":"http://127.0.0.1:2"}]}]}"#,
        )
        .unwrap()
        .0;
        let cluster = super::super::Cluster::new(&cfg);
        Databases::new(&cluster.backends[..n])
    }

    #[test]
    fn known_set_is_every_list_and_what_was_created() {
        let d = databases(2);
        d.record(0, set(&["a", "shared"]));
        d.record(1, set(&["b", "shared"]));
        d.created("new");
        assert!(["a", "b", "shared", "new"].iter().all(|db| d.is_known(db)));
        assert!(!d.is_known("other"));
        // A list naming the created database takes over from the note.
        d.record(1, set(&["b", "new"]));
        assert!(d.is_known("new") && !lock(&d.sources).created.contains("new"));
        d.record(1, set(&["b"]));
        assert!(!d.is_known("new"));
        d.dropped("a");
        assert!(!d.is_known("a") && d.is_known("shared"));
        // An id beyond the backends is ignored, not a panic.
        d.record(7, set(&["x"]));
        assert!(!d.is_known("x"));
    }
}
