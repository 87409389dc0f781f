//! `GET|POST /query`: parse the statements, route each one, and answer as
//! one InfluxDB would.
//!
//! - A request for JSON with one statement that one backend can answer is
//!   passed through: the backend's answer (chunked, gzipped, `epoch`,
//!   `pretty` as the client asked) is streamed to the client as it arrives.
//! - Otherwise every statement is answered on its own (fanned out to the
//!   backends that hold its sources, each with its own database, and merged,
//!   see [`super::merge`]) and the results are written in one body with
//!   `statement_id` 0..n-1, as JSON or, for `Accept: application/csv`, as
//!   CSV (see [`super::render`]).
//! - Reads go to one circle whose backends are all up, taking circles in
//!   turn; a backend error or timeout moves the statement to the next
//!   circle. `SHOW` without `FROM` is answered by every backend of one whole
//!   circle, or, when no circle is whole, by the live backends of all
//!   circles, merged and de-duplicated.
//! - A circle a transfer is filling is read only when no other circle can
//!   answer. Inside it, a measurement being moved is read from its source
//!   (see `readers_of`), the old owner, alone or with the new owner when
//!   their answers merge exactly; a row both answer counts once then
//!   (`MergeKind::Series`'s `overlapping`).
//! - DDL (`CREATE/DROP DATABASE`, retention policies, `DROP MEASUREMENT`,
//!   `DROP SERIES`, `DELETE`) goes to every backend that should get it: a
//!   live backend runs it once the writes acknowledged before it are
//!   delivered there; a backend that is down (or behind) gets it queued in
//!   its spool, in order with its writes, and runs it when it is back. The
//!   writer decides which ([`Writers::run_or_queue_statement`]).

use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::forward::{first_answer, passed_headers, QueryClient, FORWARDED};
use super::lexer;
use super::merge::{self, MergeKind, Part};
use super::render::{self, Format};
use super::statement::{self, ShowKind, Source, Statement, StatementKind};
use crate::cluster::moves::Move;
use crate::cluster::{Backend, Cluster};
use crate::config::Config;
use crate::log;
use crate::server::error::ApiError;
use crate::server::http::{Request, Response};
use crate::url::Params;
use crate::writer::statement::{StatementError, StatementOutcome};
use crate::writer::Writers;

/// A passed-through answer up to this size is buffered and sent with its
/// length; larger or chunked ones are streamed.
const SMALL_ANSWER: usize = 256 * 1024;

/// Largest form body read for a POST `/query`.
const MAX_FORM: u64 = 32 << 20;

/// What the `/query` endpoint needs, shared by all workers.
pub struct QueryService {
    pub(super) cluster: Arc<Cluster>,
    pub(super) client: QueryClient,
    db_list: Vec<String>,
    tracing: bool,
    /// Next circle to try first, so reads spread over healthy circles.
    pub(super) next_circle: AtomicUsize,
    /// How long DDL waits for a live backend to catch up with the writes
    /// acknowledged before it, before queueing it in the spool instead.
    ddl_wait: Duration,
    /// Statements answered, by how, for `/metrics`.
    pub counts: QueryCounts,
}

/// Statements answered, by how they were routed (one relaxed increment per
/// statement, where the route is decided). Refused statements and reads no
/// backend could answer are not counted.
#[derive(Debug, Default)]
pub struct QueryCounts {
    /// Reads one backend answered: passed through, or a statement of a
    /// multi-statement request whose sources one backend owns.
    pub single_owner: AtomicU64,
    /// Reads fanned out to several backends and merged.
    pub fan_out: AtomicU64,
    /// DDL run on every backend it had to reach.
    pub ddl_ran: AtomicU64,
    /// DDL queued in the spool of at least one backend (down or behind),
    /// to run there in order with the writes.
    pub ddl_queued: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Which backends of which circle answer a statement.
type Targets = Vec<Arc<Backend>>;

/// The backends of one circle that answer a statement.
#[derive(Debug)]
struct Plan {
    targets: Targets,
    /// Two of them may hold the same points (a measurement being moved
    /// between them): a row both answer counts once in the merge.
    overlapping: bool,
}

impl QueryService {
    pub fn new(cfg: &Config, cluster: Arc<Cluster>) -> QueryService {
        QueryService {
            client: QueryClient::new(cfg.query_timeout, &cluster.backends),
            cluster,
            db_list: cfg.db_list.clone(),
            tracing: cfg.query_tracing,
            next_circle: AtomicUsize::new(0),
            ddl_wait: cfg.flush_time + Duration::from_secs(2),
            counts: QueryCounts::default(),
        }
    }

    /// The client of the query path (also `/health?stats=true`'s).
    pub fn client(&self) -> &QueryClient {
        &self.client
    }

    fn db_allowed(&self, db: &str) -> bool {
        self.db_list.is_empty() || self.db_list.iter().any(|d| d == db)
    }

    /// Handles `/query` once the method and credentials are checked. With
    /// `Accept: application/csv` a refused request is answered in CSV too.
    pub fn handle(&self, writers: &Writers, req: &mut Request) -> Result<Response, ApiError> {
        let csv = Format::of(req.header("accept"), false) == Format::Csv;
        match self.answer(writers, req) {
            Err(e) if csv => Ok(csv_error_response(e)),
            other => other,
        }
    }

    fn answer(&self, writers: &Writers, req: &mut Request) -> Result<Response, ApiError> {
        let form = form_params(req)?;
        // The body is read; from here on the request is only looked at.
        let req: &Request = req;
        let params = form.as_ref().unwrap_or(&req.params);
        if params.is_invalid_utf8("q") {
            return Err(ApiError::bad_request("invalid UTF-8 in the query"));
        }
        let q = params.get("q").trim().to_string();
        if q.is_empty() {
            return Err(ApiError::bad_request("empty query"));
        }
        if self.tracing {
            log!("query: db={} q={}", params.get("db"), redact_passwords(&q));
        }
        let statements = statement::parse(&q).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let db_param = params.get("db").to_string();
        // A bound parameter can name a database that db_list never sees.
        if !self.db_list.is_empty()
            && params.has("params")
            && statements.iter().any(|s| s.bound_params)
        {
            return Err(ApiError::bad_request(
                "bound parameters cannot be used when db_list restricts databases",
            ));
        }
        for stmt in &statements {
            for db in &stmt.databases {
                if !self.db_allowed(db) {
                    return Err(ApiError::bad_request(format!("database forbidden: {db}")));
                }
            }
            if needs_db(stmt) && stmt.database.is_none() {
                if db_param.is_empty() {
                    return Err(ApiError::bad_request("database not found"));
                }
                if !self.db_allowed(&db_param) {
                    return Err(ApiError::bad_request(format!(
                        "database forbidden: {db_param}"
                    )));
                }
            }
        }
        let accept_gzip = req
            .header("accept-encoding")
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        let format = Format::of(req.header("accept"), params.get("pretty") == "true");

        // One statement for one backend: stream the backend's answer (in
        // JSON; a CSV answer is written here from the backend's JSON).
        if let (Format::Json { .. }, [stmt]) = (format, statements.as_slice()) {
            if !is_ddl(&stmt.kind) {
                let db = stmt.database.clone().unwrap_or_else(|| db_param.clone());
                if let Some(resp) = self.try_passthrough(req, params, stmt, &db, accept_gzip)? {
                    return Ok(resp);
                }
            }
        }

        let mut results = Vec::with_capacity(statements.len());
        for (i, stmt) in statements.iter().enumerate() {
            let db = stmt.database.clone().unwrap_or_else(|| db_param.clone());
            let result = if is_ddl(&stmt.kind) {
                self.run_ddl(writers, stmt, &db, i, req.method == "POST")
            } else {
                self.run_read(stmt, &db, params, format, i)
            };
            results.push(result.map_err(ApiError::bad_request)?);
        }
        Ok(answer_response(format, &results, accept_gzip))
    }

    /// Passes a single read statement through to the one backend that can
    /// answer it, trying circles in turn. `None` when it needs several.
    fn try_passthrough(
        &self,
        req: &Request,
        params: &Params,
        stmt: &Statement,
        db: &str,
        accept_gzip: bool,
    ) -> Result<Option<Response>, ApiError> {
        let plans = self.read_plans(stmt, db);
        if plans.is_empty() || plans.iter().any(|p| p.targets.len() != 1) {
            return Ok(None);
        }
        let forwarded: Vec<(&str, &str)> = FORWARDED
            .iter()
            .filter(|k| params.has(k))
            .map(|&k| (k, params.get(k)))
            .collect();
        let post = req.method == "POST";
        let mut last = String::from("backends unavailable");
        let mut owners = plans.iter().map(|p| &p.targets[0]);
        while let Some((backend, answer)) = first_answer(&mut owners, &mut last, |b| {
            self.client.send(b, post, &forwarded, accept_gzip)
        }) {
            let status = answer.status;
            let headers = passed_headers(&answer);
            // A small answer goes out in one write with its length; a large
            // (or chunked) one is streamed as it arrives, after the part
            // already read.
            let announced = answer
                .header("content-length")
                .and_then(|n| n.trim().parse::<usize>().ok());
            let mut reader = answer.into_reader();
            // A chunked answer is streamed from its first byte.
            let limit = if params.get("chunked") == "true" {
                0
            } else {
                SMALL_ANSWER
            };
            // One buffer of the announced size, with room for the probe
            // that finds its end.
            let mut head = Vec::with_capacity(announced.map_or(4096, |n| n + 1).min(limit));
            let complete = match (&mut reader).take(limit as u64).read_to_end(&mut head) {
                Ok(n) => n < limit,
                Err(e) => {
                    last = format!("backend {}: {e}", backend.name);
                    continue;
                }
            };
            let (body, stream): (Vec<u8>, Option<Box<dyn Read + Send>>) = if complete {
                (head, None)
            } else {
                (
                    Vec::new(),
                    Some(Box::new(std::io::Cursor::new(head).chain(reader))),
                )
            };
            count(&self.counts.single_owner);
            return Ok(Some(Response {
                status,
                headers,
                body,
                stream,
            }));
        }
        Err(ApiError::bad_request(last))
    }

    /// The candidate backend sets for a read, one per circle, best first:
    /// whole circles (all needed backends up, none write-only or catching
    /// up, circle not being filled by a transfer) in turn, then circles
    /// that are up but catching up, write-only or transferring. A `SHOW`
    /// without `FROM` with no circle whole gets the live backends of all
    /// circles as its only set.
    fn read_plans(&self, stmt: &Statement, db: &str) -> Vec<Plan> {
        let mut best = self.in_read_order(|c| self.circle_targets(c, stmt, db), |p| &p.targets);
        if best.is_empty() && stmt.source_refs.is_empty() {
            let live: Targets = self
                .cluster
                .backends
                .iter()
                .filter(|b| b.is_active())
                .cloned()
                .collect();
            if !live.is_empty() {
                best.push(Plan {
                    targets: live,
                    overlapping: false,
                });
            }
        }
        best
    }

    /// `pick(c)` for every circle `c` whose picked backends (`targets`) are
    /// all up, best first: circles where none is write-only or catching up
    /// and the circle is not being filled by a transfer, from a start that
    /// rotates so reads spread, then the others.
    pub(super) fn in_read_order<T>(
        &self,
        mut pick: impl FnMut(usize) -> T,
        targets: impl Fn(&T) -> &[Arc<Backend>],
    ) -> Vec<T> {
        let n = self.cluster.circles.len();
        let start = self.next_circle.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let mut best = Vec::new();
        let mut second = Vec::new();
        for k in 0..n {
            let c = (start + k) % n;
            let picked = pick(c);
            let backends = targets(&picked);
            if backends.iter().any(|b| !b.is_active()) {
                continue;
            }
            if self.cluster.is_transferring(c)
                || backends.iter().any(|b| b.write_only || b.is_rewriting())
            {
                second.push(picked);
            } else {
                best.push(picked);
            }
        }
        best.extend(second);
        best
    }

    /// The backends of circle `c` that hold what a statement reads. Each
    /// source is placed with its own database (`FROM a, db2.rp.b`); a
    /// measurement the circle is moving is read as `readers_of` says.
    /// Without `FROM` or with a regex source, every backend of the circle
    /// and every removed backend it is still moving data from.
    fn circle_targets(&self, c: usize, stmt: &Statement, db: &str) -> Plan {
        let circle = &self.cluster.circles[c];
        // One atomic load when the circle moves nothing, else one read
        // lock for the whole statement.
        let moves = self.cluster.moves_in(c);
        let mut plan = Plan {
            targets: Vec::new(),
            overlapping: false,
        };
        if stmt.source_refs.is_empty()
            || stmt
                .source_refs
                .iter()
                .any(|r| matches!(r.source, Source::Regex(_)))
        {
            plan.targets = circle.backends.clone();
            if let Some(moves) = &moves {
                plan.overlapping = true;
                for m in moves.iter().filter(|m| !m.member) {
                    add_target(&mut plan.targets, &m.source);
                }
            }
            return plan;
        }
        // DDL must reach every copy: as a read that merges exactly.
        let exact = is_ddl(&stmt.kind) || merges_exactly(stmt);
        for r in &stmt.source_refs {
            if let Source::Measurement(m) = &r.source {
                let db = r.database.as_deref().unwrap_or(db);
                let key = self.cluster.shard_key.render(db, m);
                let owner = circle.owner(&key);
                let moving = moves.as_ref().and_then(|moves| moves.get(&key));
                let (readers, overlapping) = readers_of(owner, moving, exact);
                plan.overlapping |= overlapping;
                for b in readers {
                    add_target(&mut plan.targets, b);
                }
            }
        }
        plan
    }

    /// Answers a read statement from the first plan that works; the result
    /// object carries `statement_id`.
    fn run_read(
        &self,
        stmt: &Statement,
        db: &str,
        params: &Params,
        format: Format,
        statement_id: usize,
    ) -> Result<serde_json::Value, String> {
        let plans = self.read_plans(stmt, db);
        let text = match merge_kind(stmt, false) {
            MergeKind::Show { .. } => stmt.text_without_limit.as_str(),
            _ => stmt.text.as_str(),
        };
        let mut sent: Vec<(&str, &str)> = vec![("q", text)];
        if !db.is_empty() {
            sent.push(("db", db));
        }
        for k in ["rp", "params"] {
            if params.has(k) {
                sent.push((k, params.get(k)));
            }
        }
        // CSV has numbers for times: the client's epoch, else nanoseconds.
        let epoch = params.get("epoch");
        match format {
            Format::Csv if !EPOCHS.contains(&epoch) => sent.push(("epoch", "ns")),
            _ if params.has("epoch") => sent.push(("epoch", epoch)),
            _ => {}
        }
        let mut last = String::from("backends unavailable");
        for plan in plans {
            let targets = &plan.targets;
            match self.fan_out(targets, &sent) {
                Ok(mut parts) => {
                    if (stmt.wildcard || stmt.group_by_all) && targets.len() > 1 {
                        self.complete_silent_parts(stmt, targets, &mut parts, &sent);
                    }
                    let kind = merge_kind(stmt, plan.overlapping);
                    count(match targets.len() {
                        1 => &self.counts.single_owner,
                        _ => &self.counts.fan_out,
                    });
                    return Ok(merge::merge(&kind, statement_id, parts));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Runs one statement on several backends in parallel; the first
    /// statement result of each answer.
    fn fan_out(
        &self,
        targets: &[Arc<Backend>],
        sent: &[(&str, &str)],
    ) -> Result<Vec<Part>, String> {
        let ask = |b: &Backend| self.client.json(b, true, sent).map_err(|e| e.to_string());
        let answers: Vec<Result<serde_json::Value, String>> = if let [one] = targets {
            vec![ask(one)]
        } else {
            in_parallel(
                targets
                    .iter()
                    .map(|b| Box::new(move || ask(b)) as Job<'_, _>)
                    .collect(),
                || Err("a query thread failed".into()),
            )
        };
        answers
            .into_iter()
            .map(|answer| {
                let result = first_result(answer?).unwrap_or_else(|| serde_json::json!({}));
                Ok(Part::new(result))
            })
            .collect()
    }

    /// A `SELECT` fanned out to several backends, with a wildcard field list
    /// or `GROUP BY *`: influxd's columns (and tag keys) include those of
    /// every measurement in the queried shards, even one without a matching
    /// row, but a backend whose measurements matched nothing answers no
    /// series. Each such backend is asked, in parallel, `EXPLAIN` of the
    /// statement, whose plan lists those columns, and for `GROUP BY *`
    /// `SHOW TAG KEYS` of the statement's sources. Any failure leaves the
    /// answer as it is.
    fn complete_silent_parts(
        &self,
        stmt: &Statement,
        targets: &[Arc<Backend>],
        parts: &mut [Part],
        sent: &[(&str, &str)],
    ) {
        if parts.iter().all(Part::is_silent) {
            return;
        }
        let with_q = |q: &str| -> Vec<(String, String)> {
            sent.iter()
                .map(|&(k, v)| (k.to_string(), if k == "q" { q } else { v }.to_string()))
                .collect()
        };
        let explain = stmt
            .wildcard
            .then(|| with_q(&format!("EXPLAIN {}", stmt.text)));
        let tag_keys = stmt
            .group_by_all
            .then(|| with_q(&show_tag_keys_of(&stmt.source_refs)));
        let (explain, tag_keys) = (explain.as_deref(), tag_keys.as_deref());
        let jobs: Vec<Job<'_, ()>> = targets
            .iter()
            .zip(parts.iter_mut())
            .filter(|(_, part)| part.is_silent())
            .map(|(backend, part)| {
                Box::new(move || {
                    if let Some(q) = explain {
                        if let Ok(answer) = self.client.json(backend, true, &pairs(q)) {
                            part.columns = aliased_columns(stmt, merge::explained_columns(&answer));
                        }
                    }
                    if let Some(q) = tag_keys {
                        if let Ok(answer) = self.client.json(backend, true, &pairs(q)) {
                            part.tag_keys = merge::shown_tag_keys(&answer);
                        }
                    }
                }) as Job<'_, ()>
            })
            .collect();
        in_parallel(jobs, || ());
    }

    /// Runs a DDL statement on every backend that should get it.
    fn run_ddl(
        &self,
        writers: &Writers,
        stmt: &Statement,
        db: &str,
        statement_id: usize,
        post: bool,
    ) -> Result<serde_json::Value, String> {
        let targets = self.ddl_targets(stmt, db);
        let mut answer: Option<serde_json::Value> = None;
        let mut queued = false;
        let sent = [("q", stmt.text.as_str()), ("db", db)];
        for backend in targets {
            let run = || {
                // The client's method: InfluxDB warns about DDL sent by GET.
                match self.client.json(&backend, post, &sent) {
                    Ok(value) => Ok(Some(value)),
                    // A refusal (bad statement) is the client's answer.
                    Err(e @ crate::http_client::BackendError::Status { .. })
                        if backend.is_active() =>
                    {
                        Err(e.to_string())
                    }
                    Err(e) => {
                        log!("backend {}: {e}; queueing the statement", backend.name);
                        Ok(None)
                    }
                }
            };
            let outcome = writers
                .run_or_queue_statement(&backend, db, &stmt.text, self.ddl_wait, run)
                .map_err(|e| match e {
                    StatementError::Refused(e) => e,
                    StatementError::NotQueued(e) => e.to_string(),
                })?;
            match (outcome, &answer) {
                (StatementOutcome::Ran(value), None) => answer = first_result(value),
                (StatementOutcome::Ran(_), Some(_)) => {}
                (StatementOutcome::Queued, _) => queued = true,
            }
        }
        count(if queued {
            &self.counts.ddl_queued
        } else {
            &self.counts.ddl_ran
        });
        match &stmt.kind {
            StatementKind::CreateDatabase(name) => self.cluster.databases.created(name),
            StatementKind::DropDatabase(name) => self.cluster.databases.dropped(name),
            _ => {}
        }
        let mut result = answer.unwrap_or_else(|| serde_json::json!({}));
        if let Some(obj) = result.as_object_mut() {
            obj.insert("statement_id".into(), statement_id.into());
        }
        Ok(result)
    }

    /// The backends a DDL statement must reach.
    fn ddl_targets(&self, stmt: &Statement, db: &str) -> Targets {
        let all = || self.cluster.backends.clone();
        match &stmt.kind {
            StatementKind::DropMeasurement(_)
            | StatementKind::DropSeries
            | StatementKind::Delete
                if !stmt.source_refs.is_empty() =>
            {
                // A measurement being moved is changed on its source too,
                // when the source is a backend of the cluster (a removed
                // one has no spool to queue the statement in).
                let mut out: Targets = Vec::new();
                for c in 0..self.cluster.circles.len() {
                    for b in self.circle_targets(c, stmt, db).targets {
                        if self
                            .cluster
                            .backends
                            .get(b.id)
                            .is_some_and(|m| Arc::ptr_eq(m, &b))
                        {
                            add_target(&mut out, &b);
                        }
                    }
                }
                out
            }
            _ => all(),
        }
    }
}

/// Appends `b` to `targets` unless it is there already.
fn add_target(targets: &mut Targets, b: &Arc<Backend>) {
    if !targets.iter().any(|t| t.id == b.id && t.url == b.url) {
        targets.push(Arc::clone(b));
    }
}

/// Who answers, in one circle, a statement's reads of a measurement owned
/// by `owner`, and whether two of them may hold the same points:
/// - not moving: its owner;
/// - moving from a backend of the cluster: the source holds all of it (it
///   gets the writes of the move too). When the answers of two backends
///   merge `exact`ly, the owner is asked as well, for points written to it
///   before the move began; otherwise the source alone answers;
/// - moving from a removed backend (`rebalance rm`): no backend holds all
///   of it, so both are asked and merged. Raw points then answer right;
///   an aggregate over the measurement gets merge's "cannot combine
///   series" error rather than a wrong number.
fn readers_of<'a>(
    owner: &'a Arc<Backend>,
    moving: Option<&'a Move>,
    exact: bool,
) -> (Vec<&'a Arc<Backend>>, bool) {
    match moving {
        Some(m) if m.source.id != owner.id || m.source.url != owner.url => {
            if m.member && !exact {
                (vec![&m.source], false)
            } else {
                (vec![owner, &m.source], true)
            }
        }
        _ => (vec![owner], false),
    }
}

/// Whether the answers of two backends holding overlapping copies of a
/// measurement merge into the answer of one holding their union: raw points
/// (a row both answer counted once, `LIMIT` applied again) without `OFFSET` or
/// `SOFFSET`, and `SHOW` listings (deduplicated, limits applied after the
/// merge), not counts.
fn merges_exactly(stmt: &Statement) -> bool {
    match &stmt.kind {
        StatementKind::Select => stmt.raw_points && stmt.offset.is_none() && stmt.soffset.is_none(),
        StatementKind::Show(kind) => !kind.is_cardinality(),
        _ => false,
    }
}

/// The column prefix of each field-list item that is a call over `*`.
fn call_prefixes(stmt: &Statement) -> Vec<Option<String>> {
    stmt.select_calls
        .iter()
        .map(|c| c.as_ref().map(|c| c.prefix.clone()))
        .collect()
}

/// `EXPLAIN` names a call's columns after its function (`count_y`); with an
/// alias (`count(*) AS c`) influxd names them after the alias (`c_y`). A
/// function used by several aliased calls cannot be told apart and is left.
fn aliased_columns(stmt: &Statement, columns: Vec<String>) -> Vec<String> {
    let calls: Vec<&statement::WildcardCall> = stmt.select_calls.iter().flatten().collect();
    columns
        .into_iter()
        .map(|c| {
            let renamed = calls.iter().find_map(|call| {
                let rest = c.strip_prefix(call.function.as_str())?.strip_prefix('_')?;
                let only = calls.iter().filter(|o| o.function == call.function).count() == 1;
                (only && call.prefix != call.function).then(|| format!("{}_{rest}", call.prefix))
            });
            renamed.unwrap_or(c)
        })
        .collect()
}

/// A call to a backend run by [`in_parallel`].
type Job<'a, T> = Box<dyn FnOnce() -> T + Send + 'a>;

/// Runs `jobs` on scoped threads and returns their results in order. A job
/// whose thread cannot be started (the process is out of threads) runs on
/// the calling thread instead; a job that panics gives `failed()`.
fn in_parallel<T: Send>(jobs: Vec<Job<'_, T>>, failed: impl Fn() -> T) -> Vec<T> {
    std::thread::scope(|scope| {
        let mut running = Vec::with_capacity(jobs.len());
        for job in jobs {
            // The job waits in a slot the thread takes it from, so it is
            // still here when the thread cannot be started.
            let slot = Arc::new(std::sync::Mutex::new(Some(job)));
            let theirs = Arc::clone(&slot);
            let started = std::thread::Builder::new().spawn_scoped(scope, move || {
                let job = theirs.lock().ok().and_then(|mut j| j.take());
                job.map(|j| j())
            });
            running.push(match started {
                Ok(handle) => Err(handle),
                Err(_) => {
                    let job = slot.lock().ok().and_then(|mut j| j.take());
                    Ok(job.map(|j| j()))
                }
            });
        }
        running
            .into_iter()
            .map(|r| {
                let done = match r {
                    Ok(done) => done,
                    Err(handle) => handle.join().ok().flatten(),
                };
                done.unwrap_or_else(&failed)
            })
            .collect()
    })
}

/// Borrowed request parameters.
fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `SHOW TAG KEYS FROM` the statement's sources, each qualified as written
/// (`"db"."rp"."m"`, `/re/`).
fn show_tag_keys_of(refs: &[statement::SourceRef]) -> String {
    let sources: Vec<String> = refs
        .iter()
        .map(|r| {
            let name = match &r.source {
                Source::Measurement(m) => lexer::quote_ident(m),
                Source::Regex(re) => format!("/{}/", re.replace('/', "\\/")),
            };
            match (&r.database, &r.retention_policy) {
                (Some(db), Some(rp)) => format!(
                    "{}.{}.{name}",
                    lexer::quote_ident(db),
                    lexer::quote_ident(rp)
                ),
                (Some(db), None) => format!("{}..{name}", lexer::quote_ident(db)),
                (None, Some(rp)) => format!("{}.{name}", lexer::quote_ident(rp)),
                (None, None) => name,
            }
        })
        .collect();
    format!("SHOW TAG KEYS FROM {}", sources.join(", "))
}

/// Every DDL statement.
fn is_ddl(kind: &StatementKind) -> bool {
    !matches!(kind, StatementKind::Select | StatementKind::Show(_))
}

/// Whether a statement needs a database (from `ON`, a qualified name, or
/// the `db` parameter).
fn needs_db(stmt: &Statement) -> bool {
    !matches!(
        stmt.kind,
        StatementKind::Show(ShowKind::Databases)
            | StatementKind::Show(ShowKind::Stats)
            | StatementKind::CreateDatabase(_)
            | StatementKind::DropDatabase(_)
    )
}

/// How the answers of several backends to a statement are combined;
/// `overlapping`: they hold overlapping copies of a moving measurement.
fn merge_kind(stmt: &Statement, overlapping: bool) -> MergeKind {
    match &stmt.kind {
        StatementKind::Show(kind) => match kind {
            ShowKind::Databases | ShowKind::RetentionPolicies => MergeKind::CreationOrder,
            ShowKind::Stats => MergeKind::Concat,
            ShowKind::MeasurementCardinality
            | ShowKind::SeriesCardinality
            | ShowKind::TagKeyCardinality
            | ShowKind::TagValuesCardinality
            | ShowKind::FieldKeyCardinality => MergeKind::Cardinality,
            _ => MergeKind::Show {
                limit: stmt.limit,
                offset: stmt.offset,
            },
        },
        _ => MergeKind::Series {
            wildcard: stmt.wildcard,
            calls: call_prefixes(stmt),
            slimit: stmt.slimit,
            soffset: stmt.soffset,
            raw_points: stmt.raw_points,
            descending: stmt.order_desc,
            overlapping,
            limit: stmt.limit.filter(|_| stmt.offset.is_none()),
        },
    }
}

/// The parameters of a POST form body followed by the URL's (as Go's
/// `FormValue` looks them up); `None` when there is no form body, and the
/// URL's parameters are all there is.
fn form_params(req: &mut Request) -> Result<Option<Params>, ApiError> {
    if req.method != "POST" || !req.has_form_body() {
        return Ok(None);
    }
    let body = req.read_body(MAX_FORM)?;
    let text = String::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid UTF-8 in the form body"))?;
    Ok(Some(Params::parse(&text).then(&req.params)))
}

/// `results[0]` of a backend's answer to one statement.
fn first_result(mut answer: serde_json::Value) -> Option<serde_json::Value> {
    answer
        .get_mut("results")
        .and_then(|r| r.as_array_mut())
        .and_then(|r| r.first_mut())
        .map(serde_json::Value::take)
}

/// The `epoch` values influxd turns times into numbers for.
const EPOCHS: [&str; 7] = ["ns", "u", "µ", "ms", "s", "m", "h"];

/// The body of `results` in the client's format, gzipped when the client
/// accepts it.
fn answer_response(format: Format, results: &[serde_json::Value], gzip: bool) -> Response {
    let body = format.body(results);
    let mut headers = vec![("Content-Type", format.content_type().to_string())];
    let body = if gzip {
        match crate::writer::post::gzip(&body, Vec::new()) {
            Ok(gz) => {
                headers.push(("Content-Encoding", "gzip".into()));
                gz
            }
            Err(_) => body,
        }
    } else {
        body
    };
    Response {
        status: 200,
        headers,
        body,
        stream: None,
    }
}

/// A refused request as influxd answers it in CSV: same status and
/// `X-Influxdb-Error` as in JSON, the message in a CSV body.
fn csv_error_response(e: ApiError) -> Response {
    let body = render::csv_error(&e.message);
    let mut resp = e.into_response(false);
    for (name, value) in resp.headers.iter_mut() {
        if name.eq_ignore_ascii_case("content-type") {
            *value = Format::Csv.content_type().to_string();
        }
    }
    resp.body = body;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_jobs_answer_in_order_and_a_panic_is_a_failure() {
        let jobs: Vec<Job<'_, Result<u32, String>>> = vec![
            Box::new(|| {
                std::thread::sleep(std::time::Duration::from_millis(30));
                Ok(1)
            }),
            Box::new(|| panic!("a failing backend call")),
            Box::new(|| Ok(3)),
        ];
        let out = in_parallel(jobs, || Err("failed".to_string()));
        assert_eq!(out, [Ok(1), Err("failed".to_string()), Ok(3)]);
    }

    #[test]
    fn explained_call_columns_take_the_alias() {
        let stmt = |q: &str| statement::parse(q).unwrap().remove(0);
        let cols = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(
            aliased_columns(
                &stmt("SELECT count(*) AS c, mean(*) FROM a, b"),
                cols(&["count_y", "mean_y"])
            ),
            ["c_y", "mean_y"]
        );
        // Two aliased calls of one function: EXPLAIN cannot tell them apart.
        assert_eq!(
            aliased_columns(
                &stmt("SELECT max(*) AS a, max(*) AS b FROM a, b"),
                cols(&["max_y"])
            ),
            ["max_y"]
        );
    }

    #[test]
    fn tag_keys_are_asked_of_the_sources_as_written() {
        let stmt = |q: &str| statement::parse(q).unwrap().remove(0);
        assert_eq!(
            show_tag_keys_of(
                &stmt(r#"SELECT * FROM "cpu load", db..m, rp."x\"y", /a\/b/ GROUP BY *"#)
                    .source_refs
            ),
            r#"SHOW TAG KEYS FROM "cpu load", "db".."m", "rp"."x\"y", /a\/b/"#
        );
        assert_eq!(
            show_tag_keys_of(&stmt("SELECT * FROM d.r.m GROUP BY *").source_refs),
            r#"SHOW TAG KEYS FROM "d"."r"."m""#
        );
    }

    /// Two circles of two backends (`db1,cpu` -> a / c, `db1,mem` -> b / d).
    fn service() -> QueryService {
        let text = r#"{"circles":[
            {"name":"c1","backends":[{"name":"a","url":"http://h:1"},{"name":"b","url":"http://h:2"}]},
            {"name":"c2","backends":[{"name":"c","url":"http://h:3"},{"name":"d","url":"http://h:4"}]}]}"#;
        let cfg = Config::from_json(text).unwrap().0;
        let cluster = Arc::new(Cluster::new(&cfg));
        QueryService::new(&cfg, cluster)
    }

    /// Backend names of each plan of `q` (db1), and whether it overlaps.
    fn plans(s: &QueryService, q: &str) -> Vec<(Vec<String>, bool)> {
        let stmt = statement::parse(q).unwrap().remove(0);
        s.read_plans(&stmt, "db1")
            .into_iter()
            .map(|p| {
                (
                    p.targets.iter().map(|b| b.name.clone()).collect(),
                    p.overlapping,
                )
            })
            .collect()
    }

    /// The backends a DDL statement `q` goes to, by name.
    fn ddl_names(s: &QueryService, q: &str) -> Vec<String> {
        let stmt = statement::parse(q).unwrap().remove(0);
        s.ddl_targets(&stmt, "db1")
            .iter()
            .map(|b| b.name.clone())
            .collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_transferring_circle_answers_only_when_no_other_can() {
        let s = service();
        s.cluster.set_transferring(0, true);
        for _ in 0..2 {
            let p = plans(&s, "SELECT * FROM cpu");
            assert_eq!(p, [(names(&["c"]), false), (names(&["a"]), false)]);
        }
        s.cluster.set_transferring(0, false);
        let mut firsts: Vec<Vec<String>> = (0..2)
            .map(|_| plans(&s, "SELECT * FROM cpu").remove(0).0)
            .collect();
        firsts.sort();
        assert_eq!(firsts, [names(&["a"]), names(&["c"])]);
    }

    #[test]
    fn a_moving_measurement_is_read_from_its_source() {
        let s = service();
        let c = &s.cluster;
        c.set_transferring(0, true);
        // Circle c1 copies db1,cpu from b to its owner a.
        c.begin_move(0, "db1", "cpu", Arc::clone(&c.backends[1]));
        let in_c1 = |q: &str| {
            plans(&s, q)
                .into_iter()
                .find(|p| p.0.iter().all(|n| n == "a" || n == "b"))
                .unwrap()
        };
        // Raw points: owner and source, merged and deduplicated.
        assert_eq!(in_c1("SELECT v FROM cpu"), (names(&["a", "b"]), true));
        assert_eq!(in_c1("SHOW TAG KEYS FROM cpu"), (names(&["a", "b"]), true));
        // An aggregate, an OFFSET or a count: the source alone holds it all.
        assert_eq!(in_c1("SELECT count(v) FROM cpu"), (names(&["b"]), false));
        assert_eq!(
            in_c1("SELECT v FROM cpu LIMIT 1 OFFSET 2"),
            (names(&["b"]), false)
        );
        assert_eq!(
            in_c1("SHOW SERIES CARDINALITY FROM cpu"),
            (names(&["b"]), false)
        );
        // Other measurements and the other circle are untouched.
        assert_eq!(in_c1("SELECT count(v) FROM mem"), (names(&["b"]), false));
        assert_eq!(plans(&s, "SELECT v FROM cpu")[0], (names(&["c"]), false));
        // DDL changes the source's copy too.
        assert_eq!(ddl_names(&s, "DELETE FROM cpu"), names(&["a", "b", "c"]));
        c.end_move(0, "db1", "cpu");
        assert_eq!(in_c1("SELECT count(v) FROM cpu"), (names(&["a"]), false));
    }

    #[test]
    fn a_measurement_moving_from_a_removed_backend_is_read_from_both() {
        let s = service();
        let c = &s.cluster;
        let gone = crate::cluster::moves::tests::removed(4, "http://h:9");
        c.begin_move(0, "db1", "cpu", gone);
        let c1 = |q: &str| {
            plans(&s, q)
                .into_iter()
                .find(|p| p.0.contains(&"a".to_string()))
                .unwrap()
        };
        assert_eq!(
            c1("SELECT count(v) FROM cpu"),
            (names(&["a", "gone"]), true)
        );
        // Whole-circle reads reach it too.
        assert_eq!(c1("SHOW MEASUREMENTS"), (names(&["a", "b", "gone"]), true));
        // DDL never goes to a backend without a spool.
        assert_eq!(ddl_names(&s, "DELETE FROM cpu"), names(&["a", "c"]));
    }

    #[test]
    fn passed_header_names_match_their_lookups() {
        for (name, sent) in crate::query::forward::PASSED_HEADERS {
            assert_eq!(sent.to_ascii_lowercase(), name);
            assert!(sent
                .split('-')
                .all(|p| p.starts_with(|c: char| c.is_ascii_uppercase())));
        }
    }
}

/// The query with the string after each `PASSWORD` keyword replaced, for
/// `query_tracing` (user statements are refused, but still logged).
fn redact_passwords(q: &str) -> std::borrow::Cow<'_, str> {
    use crate::query::lexer::{tokenize, Keyword, TokenKind};
    let Ok(tokens) = tokenize(q) else {
        return std::borrow::Cow::Borrowed(q);
    };
    // The first string after PASSWORD: `WITH PASSWORD 's'`, `SET
    // PASSWORD FOR u = 's'`.
    let mut secrets: Vec<(usize, usize)> = Vec::new();
    let mut armed = false;
    for t in &tokens {
        match t.kind {
            TokenKind::Keyword(Keyword::Password) => armed = true,
            TokenKind::String if armed => {
                secrets.push((t.start, t.end));
                armed = false;
            }
            _ => {}
        }
    }
    if secrets.is_empty() {
        return std::borrow::Cow::Borrowed(q);
    }
    let mut out = String::with_capacity(q.len());
    let mut at = 0;
    for (start, end) in secrets {
        out.push_str(&q[at..start]);
        out.push_str("'[REDACTED]'");
        at = end;
    }
    out.push_str(&q[at..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod redact_tests {
    use super::redact_passwords;

    #[test]
    fn passwords_are_redacted_and_other_queries_kept() {
        assert_eq!(
            redact_passwords(
                "CREATE USER bob WITH PASSWORD 'hunter2'; SET PASSWORD FOR bob = 'x\\'y'"
            ),
            "CREATE USER bob WITH PASSWORD '[REDACTED]'; SET PASSWORD FOR bob = '[REDACTED]'"
        );
        assert_eq!(redact_passwords("SELECT * FROM cpu"), "SELECT * FROM cpu");
    }
}
