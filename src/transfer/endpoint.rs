//! The HTTP side of transfers: `POST /rebalance`, `/recovery`, `/resync`,
//! `/cleanup` (old `/clear`), `GET|POST /transfer/state` (old
//! `/migrate/state`), `GET /transfer/stats` (old `/migrate/stats`). The
//! router has checked the method and the credentials.
//!
//! Parameters come from a form body (`application/x-www-form-urlencoded`)
//! and then the URL, as Go's `FormValue`; the body of `rebalance rm` is
//! JSON. Parameter errors are JSON 400s with the Go proxy's texts; the busy
//! answers are its plain-text 400s; a started operation answers 202
//! `accepted`. All parameters are checked before the busy state (the Go
//! proxy checks `worker`, `batch`, `since`, `ha_addrs` after it), so a
//! malformed request gets its parameter error even while a transfer runs.

use std::sync::Arc;

use super::plan::{Kind, Operation};
use super::tlog::RemovedBackend;
use super::{peers, stats, Transfers, DEFAULT_BATCH, DEFAULT_WORKER};
use crate::server::error::ApiError;
use crate::server::http::{Request, Response};
use crate::url::Params;

/// Largest body read (a form, or the removed backends of `rm`).
const MAX_BODY: u64 = 1 << 20;

/// `POST /rebalance?circle_id=&operation=add|rm`.
pub fn rebalance(svc: &Arc<Transfers>, req: &mut Request) -> Result<Response, ApiError> {
    let (params, body) = read(req)?;
    let circle = circle_id(&params, "circle_id", svc.cluster().circles.len())?;
    let operation = params.get("operation");
    if operation != "add" && operation != "rm" {
        return Err(ApiError::bad_request("invalid operation"));
    }
    let removed = if operation == "rm" {
        removed_backends(&body)?
    } else {
        Vec::new()
    };
    let (mut op, addrs) = parse_common(&params, Kind::Rebalance)?;
    op.circle_id = Some(circle);
    op.operation = operation.to_string();
    start(svc, (op, addrs), removed)
}

/// `POST /recovery?from_circle_id=&to_circle_id=[&backend_urls=]`.
pub fn recovery(svc: &Arc<Transfers>, req: &mut Request) -> Result<Response, ApiError> {
    let (params, _) = read(req)?;
    let n = svc.cluster().circles.len();
    let from = circle_id(&params, "from_circle_id", n)?;
    let to = circle_id(&params, "to_circle_id", n)?;
    if from == to {
        return Err(ApiError::bad_request(
            "from_circle_id and to_circle_id cannot be same",
        ));
    }
    let (mut op, addrs) = parse_common(&params, Kind::Recovery)?;
    op.from_circle_id = Some(from);
    op.to_circle_id = Some(to);
    op.backend_urls = list(params.get("backend_urls"))
        .into_iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    start(svc, (op, addrs), Vec::new())
}

/// `POST /resync`.
pub fn resync(svc: &Arc<Transfers>, req: &mut Request) -> Result<Response, ApiError> {
    let (params, _) = read(req)?;
    let op = parse_common(&params, Kind::Resync)?;
    start(svc, op, Vec::new())
}

/// `POST /cleanup?circle_id=[&force=true]`.
pub fn cleanup(svc: &Arc<Transfers>, req: &mut Request) -> Result<Response, ApiError> {
    let (params, _) = read(req)?;
    let circle = circle_id(&params, "circle_id", svc.cluster().circles.len())?;
    let (mut op, addrs) = parse_common(&params, Kind::Cleanup)?;
    op.circle_id = Some(circle);
    op.force = match params.get("force").trim() {
        "" => false,
        v => parse_bool(v)
            .ok_or_else(|| ApiError::bad_request("invalid force, require a boolean"))?,
    };
    start(svc, (op, addrs), Vec::new())
}

/// Starts `op` (with the peers of `ha_addrs` when given): 202
/// `accepted`, or the busy text.
fn start(
    svc: &Arc<Transfers>,
    (op, ha_addrs): (Operation, Option<Vec<String>>),
    removed: Vec<RemovedBackend>,
) -> Result<Response, ApiError> {
    match svc.start(op, removed, ha_addrs) {
        Ok(()) => Ok(Response::text(202, "accepted")),
        Err(busy) => Ok(Response::text(400, &busy)),
    }
}

/// `GET|POST /transfer/state`.
pub fn state(svc: &Transfers, req: &mut Request, pretty: bool) -> Result<Response, ApiError> {
    if req.method == "GET" {
        return Ok(Response::json(200, &stats::state(svc), pretty));
    }
    let (params, body) = read(req)?;
    let c = svc.cluster();
    let mut echo = serde_json::Map::new();
    let resyncing = params.get("resyncing");
    if !resyncing.is_empty() {
        let on = parse_bool(resyncing).ok_or_else(|| ApiError::bad_request("illegal resyncing"))?;
        c.set_resyncing(on);
        echo.insert("resyncing".into(), on.into());
    }
    if !params.get("circle_id").is_empty() || !params.get("transferring").is_empty() {
        let id = circle_id(&params, "circle_id", c.circles.len())?;
        let on = parse_bool(params.get("transferring"))
            .ok_or_else(|| ApiError::bad_request("illegal transferring"))?;
        c.set_transferring(id, on);
        if on {
            begin_peer_moves(svc, &body);
        }
        echo.insert(
            "circle".into(),
            serde_json::json!({"id": id, "name": c.circles[id].name, "transferring": on}),
        );
    }
    if echo.is_empty() {
        return Err(ApiError::bad_request("missing query parameter"));
    }
    Ok(Response::json(200, &echo, pretty))
}

/// The moves a peer running the operation sent with `transferring=true`
/// ([`peers::Moves`]): each whose source is one of our backends is read
/// and written as the peer does. Another body (none, a form) adds nothing.
fn begin_peer_moves(svc: &Transfers, body: &[u8]) {
    let Ok(sent) = serde_json::from_slice::<peers::Moves>(body) else {
        return;
    };
    let c = svc.cluster();
    for m in sent.moves.iter().filter(|m| m.circle < c.circles.len()) {
        if let Some(source) = c.backends.iter().find(|b| b.url == m.source) {
            c.begin_move(m.circle, &m.db, &m.measurement, Arc::clone(source));
        }
    }
}

/// `GET /transfer/stats?circle_id=&type=`.
pub fn transfer_stats(svc: &Transfers, req: &Request, pretty: bool) -> Result<Response, ApiError> {
    let circle = circle_id(&req.params, "circle_id", svc.cluster().circles.len())?;
    if Kind::parse(req.params.get("type")).is_none() {
        return Err(ApiError::bad_request("invalid stats type"));
    }
    Ok(Response::json(200, &stats::stats(svc, circle), pretty))
}

/// The parameters (form body first, then URL) and the raw body.
fn read(req: &mut Request) -> Result<(Params, Vec<u8>), ApiError> {
    let body = if req.method == "POST" {
        req.read_body(MAX_BODY)?
    } else {
        Vec::new()
    };
    // curl -d sends a JSON body as a form: such a body is not parameters.
    let params = match std::str::from_utf8(&body) {
        Ok(text) if req.has_form_body() && !text.trim_start().starts_with('{') => {
            Params::parse(text.trim()).then(&req.params)
        }
        _ => req.params.clone(),
    };
    Ok((params, body))
}

/// A circle index, as the Go proxy's `formCircleId`: `invalid <key>`.
pub fn circle_id(params: &Params, key: &str, circles: usize) -> Result<usize, ApiError> {
    params
        .get(key)
        .parse::<i64>()
        .ok()
        .filter(|&id| id >= 0 && (id as u64) < circles as u64)
        .map(|id| id as usize)
        .ok_or_else(|| ApiError::bad_request(format!("invalid {key}")))
}

/// `worker`, `batch`, `since` (alias `tick`), `ha_addrs` and `dbs`, with
/// the Go defaults: the operation, and the new `ha_addrs` if given.
pub fn parse_common(
    params: &Params,
    kind: Kind,
) -> Result<(Operation, Option<Vec<String>>), ApiError> {
    let positive = |key: &str, default: usize| -> Result<usize, ApiError> {
        match params.get(key).trim() {
            "" => Ok(default),
            v => v
                .parse::<i64>()
                .ok()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("invalid {key}, require positive integer"))
                }),
        }
    };
    let worker = positive("worker", DEFAULT_WORKER)?;
    let batch = positive("batch", DEFAULT_BATCH)?;
    let since = match params.get("since").trim() {
        "" => params.get("tick").trim(),
        v => v,
    };
    let since =
        match since {
            "" => 0,
            v => v.parse::<i64>().ok().filter(|&n| n >= 0).ok_or_else(|| {
                ApiError::bad_request("invalid since, require non-negative integer")
            })?,
        };
    let addrs = peers::parse(params.get("ha_addrs")).map_err(ApiError::bad_request)?;
    let op = Operation {
        kind,
        circle_id: None,
        operation: String::new(),
        from_circle_id: None,
        to_circle_id: None,
        backend_urls: Vec::new(),
        dbs: list(params.get("dbs")),
        worker,
        batch,
        since,
        force: false,
    };
    Ok((op, addrs))
}

/// A comma-separated list, blanks dropped.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The body of `rebalance rm`: `{"backends":[{"name","url",...}]}`, at
/// least one backend, each with a URL.
pub fn removed_backends(body: &[u8]) -> Result<Vec<RemovedBackend>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Body {
        backends: Vec<RemovedBackend>,
    }
    let invalid = || ApiError::bad_request("invalid backends from body");
    let parsed: Body = serde_json::from_slice(body).map_err(|_| invalid())?;
    if parsed.backends.is_empty() || parsed.backends.iter().any(|b| b.url.trim().is_empty()) {
        return Err(invalid());
    }
    Ok(parsed.backends)
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.status, 400);
        e.message
    }

    #[test]
    fn common_parameters_have_the_go_defaults_and_errors() {
        let (op, addrs) = parse_common(&Params::parse(""), Kind::Resync).unwrap();
        assert_eq!((op.worker, op.batch, op.since), (5, 20000, 0));
        assert!(op.dbs.is_empty() && addrs.is_none());
        let p = Params::parse("worker=2&batch=+100&tick=1700000000&dbs=a,,b%20&ha_addrs=h1:1,h2:2");
        let (op, addrs) = parse_common(&p, Kind::Resync).unwrap();
        assert_eq!((op.worker, op.batch, op.since), (2, 100, 1_700_000_000));
        assert_eq!(op.dbs, ["a", "b"]);
        assert_eq!(addrs.unwrap(), ["h1:1", "h2:2"]);
        let since_wins = parse_common(&Params::parse("since=5&tick=9"), Kind::Resync).unwrap();
        assert_eq!(since_wins.0.since, 5);
        for (q, msg) in [
            ("worker=0", "invalid worker, require positive integer"),
            ("worker=-1", "invalid worker, require positive integer"),
            ("worker=x", "invalid worker, require positive integer"),
            ("batch=0", "invalid batch, require positive integer"),
            ("batch=1.5", "invalid batch, require positive integer"),
            ("since=-1", "invalid since, require non-negative integer"),
            ("tick=abc", "invalid since, require non-negative integer"),
            ("ha_addrs=h1:1", peers::INVALID),
            ("ha_addrs=h1:1,h2", peers::INVALID),
        ] {
            assert_eq!(
                err(parse_common(&Params::parse(q), Kind::Resync)),
                msg,
                "{q}"
            );
        }
    }

    #[test]
    fn circle_ids_are_checked_against_the_cluster() {
        let p = Params::parse("circle_id=1&from_circle_id=-1&to_circle_id=2&x=a");
        assert_eq!(circle_id(&p, "circle_id", 2).unwrap(), 1);
        assert_eq!(err(circle_id(&p, "circle_id", 1)), "invalid circle_id");
        assert_eq!(
            err(circle_id(&p, "from_circle_id", 3)),
            "invalid from_circle_id"
        );
        assert_eq!(
            err(circle_id(&p, "to_circle_id", 2)),
            "invalid to_circle_id"
        );
        assert_eq!(err(circle_id(&p, "x", 2)), "invalid x");
        assert_eq!(err(circle_id(&p, "missing", 2)), "invalid missing");
    }

    #[test]
    fn removed_backends_need_a_non_empty_list_with_urls() {
        let ok = br#"{"backends":[{"name":"b3","url":"http://h:8086","username":"u","password":"p","auth_encrypt":false}]}"#;
        let b = removed_backends(ok).unwrap();
        assert_eq!(
            (
                b[0].name.as_str(),
                b[0].url.as_str(),
                b[0].username.as_str()
            ),
            ("b3", "http://h:8086", "u")
        );
        for bad in [
            &b""[..],
            b"{",
            b"{}",
            br#"{"backends":[]}"#,
            br#"{"backends":{}}"#,
            br#"{"backends":[{"name":"x"}]}"#,
            br#"[{"url":"http://h"}]"#,
        ] {
            assert_eq!(
                err(removed_backends(bad)),
                "invalid backends from body",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn booleans_are_parsed_as_go_does() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        for bad in ["", "yes", "tRUE", " true"] {
            assert_eq!(parse_bool(bad), None);
        }
    }
}
