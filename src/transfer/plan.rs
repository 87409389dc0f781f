//! What a transfer copies where: a pure function of the cluster, the
//! operation and what each source backend holds (its listing), with no I/O,
//! so that every rule of reference section 6 is testable on its own.
//!
//! A task is one (source, destination, database, retention policy,
//! measurement). As the Go proxy does, a measurement gets one task per
//! retention policy of its database on the source (a policy where it has no
//! points costs one empty read).
//! - rebalance (`add`, `rm`): the sources are the removed backends and the
//!   circle's current backends; a measurement whose owner under the current
//!   ring is another backend is copied to that owner; the others are in place.
//! - recovery: every measurement of every backend of the `from` circle goes
//!   to its owner in the `to` circle, only to owners named in `backend_urls`
//!   when it is given.
//! - resync: every measurement of every backend goes to its owner in every
//!   other circle.
//! - cleanup copies nothing; [`misplaced`] names what it may drop.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::copy::RetentionPolicy;
use crate::cluster::{Backend, Cluster};

/// The four operations of reference section 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Rebalance,
    Recovery,
    Resync,
    Cleanup,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rebalance => "rebalance",
            Kind::Recovery => "recovery",
            Kind::Resync => "resync",
            Kind::Cleanup => "cleanup",
        }
    }

    /// The `type` values `/transfer/stats` accepts.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "rebalance" => Some(Kind::Rebalance),
            "recovery" => Some(Kind::Recovery),
            "resync" => Some(Kind::Resync),
            "cleanup" => Some(Kind::Cleanup),
            _ => None,
        }
    }
}

/// An operation and its parameters, as asked (and as kept in the tlog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    #[serde(rename = "type")]
    pub kind: Kind,
    /// rebalance and cleanup: the circle.
    #[serde(default)]
    pub circle_id: Option<usize>,
    /// rebalance: `add` or `rm`.
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub from_circle_id: Option<usize>,
    #[serde(default)]
    pub to_circle_id: Option<usize>,
    /// recovery: copy only to these owners (all when empty).
    #[serde(default)]
    pub backend_urls: Vec<String>,
    /// Only these databases (all when empty).
    #[serde(default)]
    pub dbs: Vec<String>,
    pub worker: usize,
    pub batch: usize,
    /// Unix seconds: copy points at or after it (0 = all).
    pub since: i64,
    /// cleanup: drop even without proof of a copy.
    #[serde(default)]
    pub force: bool,
}

impl Operation {
    /// The circle whose reads a transfer disturbs (`None` for resync).
    pub fn target_circle(&self) -> Option<usize> {
        match self.kind {
            Kind::Recovery => self.to_circle_id,
            _ => self.circle_id,
        }
    }

    /// Whether `other` asks for the same work (parameters like `worker`
    /// aside): a POST of it resumes this one's progress.
    pub fn same_work(&self, other: &Operation) -> bool {
        self.kind == other.kind
            && self.circle_id == other.circle_id
            && self.operation == other.operation
            && self.from_circle_id == other.from_circle_id
            && self.to_circle_id == other.to_circle_id
            && self.backend_urls == other.backend_urls
            && self.dbs == other.dbs
            && self.since == other.since
    }
}

/// One database as a source backend holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbListing {
    pub name: String,
    pub rps: Vec<RetentionPolicy>,
    /// Unescaped names, as `SHOW MEASUREMENTS` gives them.
    pub measurements: Vec<String>,
}

/// What one source backend holds (databases already filtered by `dbs`).
#[derive(Debug, Clone)]
pub struct Listing {
    pub source: Arc<Backend>,
    pub dbs: Vec<DbListing>,
}

/// One measurement of one retention policy to copy.
#[derive(Debug, Clone)]
pub struct Task {
    pub source: Arc<Backend>,
    pub dest: Arc<Backend>,
    /// The circle of `dest`.
    pub circle: usize,
    pub db: String,
    pub rp: String,
    pub measurement: String,
}

/// The tasks of an operation, and per source what stays where it is.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub tasks: Vec<Task>,
    /// Source URL -> (database, retention policy, measurement) units already
    /// on their owner (rebalance only).
    pub inplace: BTreeMap<String, u64>,
}

/// The backends an operation reads from: for rebalance the removed ones
/// first, then the circle's (a removed backend that is still in the circle
/// is not listed twice).
pub fn sources(op: &Operation, cluster: &Cluster, removed: &[Arc<Backend>]) -> Vec<Arc<Backend>> {
    let circle = |id: Option<usize>| {
        id.and_then(|i| cluster.circles.get(i))
            .map(|c| c.backends.clone())
            .unwrap_or_default()
    };
    match op.kind {
        Kind::Rebalance => {
            let current = circle(op.circle_id);
            let mut out: Vec<Arc<Backend>> = removed
                .iter()
                .filter(|r| !current.iter().any(|b| b.url == r.url))
                .cloned()
                .collect();
            out.extend(current);
            out
        }
        Kind::Recovery => circle(op.from_circle_id),
        Kind::Resync => cluster.backends.clone(),
        Kind::Cleanup => circle(op.circle_id),
    }
}

/// The tasks of `op` given what its sources hold.
pub fn plan(op: &Operation, cluster: &Cluster, listings: &[Listing]) -> Plan {
    let mut out = Plan::default();
    for listing in listings {
        let src = &listing.source;
        for db in &listing.dbs {
            for mm in &db.measurements {
                let key = cluster.shard_key.render(&db.name, mm);
                for (circle, dest) in destinations(op, cluster, src, &key) {
                    match dest {
                        None => {
                            *out.inplace.entry(src.url.clone()).or_default() += db.rps.len() as u64
                        }
                        Some(dest) => out.tasks.extend(db.rps.iter().map(|rp| Task {
                            source: Arc::clone(src),
                            dest: Arc::clone(&dest),
                            circle,
                            db: db.name.clone(),
                            rp: rp.name.clone(),
                            measurement: mm.clone(),
                        })),
                    }
                }
            }
        }
    }
    out
}

/// Where a measurement with shard key `key` on `src` goes: per target
/// circle its owner, or `None` when it is already there (rebalance).
fn destinations(
    op: &Operation,
    cluster: &Cluster,
    src: &Arc<Backend>,
    key: &[u8],
) -> Vec<(usize, Option<Arc<Backend>>)> {
    match op.kind {
        Kind::Rebalance => op
            .circle_id
            .and_then(|c| cluster.circles.get(c))
            .map(|c| {
                let owner = c.owner(key);
                let moved = owner.url != src.url;
                vec![(c.id, moved.then(|| Arc::clone(owner)))]
            })
            .unwrap_or_default(),
        Kind::Recovery => op
            .to_circle_id
            .and_then(|c| cluster.circles.get(c))
            .map(|c| c.owner(key))
            .filter(|o| op.backend_urls.is_empty() || op.backend_urls.contains(&o.url))
            .map(|o| vec![(o.circle, Some(Arc::clone(o)))])
            .unwrap_or_default(),
        Kind::Resync => cluster
            .circles
            .iter()
            .filter(|c| c.id != src.circle)
            .map(|c| (c.id, Some(Arc::clone(c.owner(key)))))
            .collect(),
        Kind::Cleanup => Vec::new(),
    }
}

/// The owner in circle `circle` of a measurement that `src` holds, when it
/// is another backend (a cleanup candidate).
pub fn misplaced(
    cluster: &Cluster,
    circle: usize,
    src: &Backend,
    db: &str,
    measurement: &str,
) -> Option<Arc<Backend>> {
    let c = cluster.circles.get(circle)?;
    let owner = c.owner(&cluster.shard_key.render(db, measurement));
    (owner.url != src.url).then(|| Arc::clone(owner))
}

/// Per destination and database, the retention policies its sources have
/// (first seen wins for a name), to create before copying.
pub fn schema(
    plan: &Plan,
    listings: &[Listing],
) -> Vec<(Arc<Backend>, String, Vec<RetentionPolicy>)> {
    let mut out: BTreeMap<(String, String), (Arc<Backend>, Vec<RetentionPolicy>)> = BTreeMap::new();
    for t in &plan.tasks {
        let entry = out
            .entry((t.dest.url.clone(), t.db.clone()))
            .or_insert_with(|| (Arc::clone(&t.dest), Vec::new()));
        let rps = listings
            .iter()
            .filter(|l| l.source.url == t.source.url)
            .flat_map(|l| l.dbs.iter().filter(|d| d.name == t.db))
            .flat_map(|d| d.rps.iter());
        for rp in rps {
            if !entry.1.iter().any(|r| r.name == rp.name) {
                entry.1.push(rp.clone());
            }
        }
    }
    out.into_iter()
        .map(|((_, db), (dest, rps))| (dest, db, rps))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::moves::tests::removed;
    use crate::config::Config;

    fn cluster(circles: &[usize]) -> Cluster {
        let circles: Vec<serde_json::Value> = circles
            .iter()
            .enumerate()
            .map(|(c, &n)| {
                let backends: Vec<serde_json::Value> = (0..n)
                    .map(|b| serde_json::json!({"name": format!("c{c}b{b}"), "url": url(c, b)}))
                    .collect();
                serde_json::json!({"name": format!("circle-{c}"), "backends": backends})
            })
            .collect();
        let text = serde_json::json!({ "circles": circles }).to_string();
        Cluster::new(&Config::from_json(&text).unwrap().0)
    }

    fn url(c: usize, b: usize) -> String {
        format!("http://10.0.{c}.{b}:8086")
    }

    fn rp(name: &str) -> RetentionPolicy {
        RetentionPolicy {
            name: name.into(),
            duration: "0s".into(),
            shard_group_duration: "168h0m0s".into(),
            replication: 1,
            default: name == "autogen",
        }
    }

    fn op(kind: Kind) -> Operation {
        Operation {
            kind,
            circle_id: Some(0),
            operation: "add".into(),
            from_circle_id: None,
            to_circle_id: None,
            backend_urls: Vec::new(),
            dbs: Vec::new(),
            worker: 5,
            batch: 20000,
            since: 0,
            force: false,
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    fn listing(b: &Arc<Backend>, mms: &[String]) -> Listing {
        Listing {
            source: Arc::clone(b),
            dbs: vec![DbListing {
                name: "db".into(),
                rps: vec![rp("autogen"), rp("week")],
                measurements: mms.to_vec(),
            }],
        }
    }

    /// (source url, dest url, db, rp, mm) of every task, sorted.
    fn tuples(p: &Plan) -> Vec<(String, String, String, String, String)> {
        let mut v: Vec<_> = p
            .tasks
            .iter()
            .map(|t| {
                (
                    t.source.url.clone(),
                    t.dest.url.clone(),
                    t.db.clone(),
                    t.rp.clone(),
                    t.measurement.clone(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rebalance_add_copies_only_what_the_new_ring_moves_to_its_owner() {
        let c = cluster(&[3]);
        let mms = names(40);
        // All 40 measurements were written when backend 0 was alone.
        let src = &c.circles[0].backends[0];
        let p = plan(&op(Kind::Rebalance), &c, &[listing(src, &mms)]);
        let mut expected = Vec::new();
        let mut inplace = 0;
        for mm in &mms {
            let owner = c.circles[0].owner(&c.shard_key.render("db", mm));
            if owner.url == src.url {
                inplace += 2;
                continue;
            }
            for rp in ["autogen", "week"] {
                expected.push((
                    src.url.clone(),
                    owner.url.clone(),
                    "db".into(),
                    rp.into(),
                    mm.clone(),
                ));
            }
        }
        expected.sort();
        assert!(
            !expected.is_empty() && inplace > 0,
            "the ring spreads 40 names"
        );
        assert_eq!(tuples(&p), expected);
        assert_eq!(p.inplace.get(&src.url), Some(&inplace));
        assert!(p.tasks.iter().all(|t| t.circle == 0));
    }

    #[test]
    fn rebalance_rm_reads_the_removed_backends_first_and_copies_all_they_hold() {
        let c = cluster(&[2]);
        let gone = removed(c.backends.len(), "http://10.9.9.9:8086");
        let mut o = op(Kind::Rebalance);
        o.operation = "rm".into();
        let srcs = sources(&o, &c, std::slice::from_ref(&gone));
        let urls: Vec<&str> = srcs.iter().map(|b| b.url.as_str()).collect();
        assert_eq!(urls, [gone.url.as_str(), &url(0, 0), &url(0, 1)]);
        // A "removed" backend still in the circle is not read twice.
        let again = removed(9, &url(0, 1));
        assert_eq!(sources(&o, &c, &[again]).len(), 2);
        let mms = names(10);
        let p = plan(&o, &c, &[listing(&gone, &mms)]);
        assert_eq!(
            p.tasks.len(),
            20,
            "every measurement of a removed backend moves"
        );
        assert!(p.inplace.is_empty());
        for t in &p.tasks {
            assert_eq!(
                t.dest.url,
                c.circles[0]
                    .owner(&c.shard_key.render("db", &t.measurement))
                    .url
            );
        }
    }

    #[test]
    fn recovery_copies_every_measurement_to_its_owner_in_the_to_circle_only_to_named_urls() {
        let c = cluster(&[2, 2]);
        let mut o = op(Kind::Recovery);
        o.circle_id = None;
        o.from_circle_id = Some(0);
        o.to_circle_id = Some(1);
        let srcs = sources(&o, &c, &[]);
        assert_eq!(srcs.len(), 2);
        let mms = names(12);
        let listings = [listing(&srcs[0], &mms[..6]), listing(&srcs[1], &mms[6..])];
        let p = plan(&o, &c, &listings);
        assert_eq!(p.tasks.len(), 24);
        for t in &p.tasks {
            assert_eq!(t.circle, 1);
            assert_eq!(
                t.dest.url,
                c.circles[1]
                    .owner(&c.shard_key.render("db", &t.measurement))
                    .url
            );
        }
        o.backend_urls = vec![url(1, 1)];
        let p = plan(&o, &c, &listings);
        assert!(!p.tasks.is_empty() && p.tasks.len() < 24);
        assert!(p.tasks.iter().all(|t| t.dest.url == url(1, 1)));
        assert_eq!(o.target_circle(), Some(1));
    }

    #[test]
    fn resync_copies_each_backend_to_its_owner_in_every_other_circle() {
        let c = cluster(&[2, 1, 3]);
        let o = op(Kind::Resync);
        let srcs = sources(&o, &c, &[]);
        assert_eq!(srcs.len(), 6);
        let mms = names(5);
        let listings: Vec<Listing> = srcs.iter().map(|s| listing(s, &mms)).collect();
        let p = plan(&o, &c, &listings);
        // 6 sources x 5 measurements x 2 rps x 2 other circles.
        assert_eq!(p.tasks.len(), 120);
        for t in &p.tasks {
            assert_ne!(t.circle, t.source.circle);
            assert_eq!(
                t.dest.url,
                c.circles[t.circle]
                    .owner(&c.shard_key.render("db", &t.measurement))
                    .url
            );
        }
    }

    #[test]
    fn schema_gives_each_destination_the_policies_of_its_sources() {
        let c = cluster(&[2]);
        let src = &c.circles[0].backends[0];
        let p = plan(&op(Kind::Rebalance), &c, &[listing(src, &names(20))]);
        let s = schema(&p, &[listing(src, &names(20))]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0.url, url(0, 1));
        assert_eq!(s[0].1, "db");
        let rps: Vec<&str> = s[0].2.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rps, ["autogen", "week"]);
    }

    #[test]
    fn misplaced_names_the_owner_only_when_it_is_another_backend() {
        let c = cluster(&[2]);
        for mm in names(10) {
            let owner = c.circles[0].owner(&c.shard_key.render("db", &mm));
            for b in &c.circles[0].backends {
                let m = misplaced(&c, 0, b, "db", &mm);
                assert_eq!(
                    m.map(|o| o.url.clone()),
                    (b.url != owner.url).then(|| owner.url.clone())
                );
            }
        }
    }
}
