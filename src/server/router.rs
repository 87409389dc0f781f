//! Which handler answers which path: exact paths, as Go's ServeMux matches
//! them, method checked before auth, and the common headers on every answer.

use std::time::Instant;

use super::error::ApiError;
use super::http::{Request, Response};
use super::State;
use crate::admin;
use crate::metrics;
use crate::transfer::endpoint;
use crate::write::endpoint::WriteScratch;

/// Answers one request; never panics on input. Counts it by endpoint and
/// status, with the time it took, for `/metrics`.
pub fn route(state: &State, scratch: &mut WriteScratch, req: &mut Request) -> Response {
    let started = Instant::now();
    let response = dispatch(state, scratch, req);
    let endpoint = metrics::Endpoint::of(&req.path);
    state
        .requests
        .observe(endpoint, response.status, started.elapsed());
    response
}

fn dispatch(state: &State, scratch: &mut WriteScratch, req: &mut Request) -> Response {
    let pretty = req.pretty();
    let result = match req.path.as_str() {
        "/ping" => ping(state, req),
        "/metrics" => metrics(state, req),
        "/write" => write(state, scratch, req),
        "/query" => query(state, req),
        "/api/v2/write" => write_v2(state, scratch, req),
        "/api/v2/query" => flux(state, req),
        "/api/v1/prom/write" => post_only(state, req)
            .and_then(|()| crate::prom::write::handle(&state.write, scratch, req)),
        "/api/v1/prom/read" => post_only(state, req)
            .and_then(|()| crate::prom::read::handle(&state.query, &state.write, req)),
        "/health" => get_only(state, req).map(|()| health(state, req, pretty)),
        "/encrypt" => cipher_text(req, true),
        "/decrypt" => cipher_text(req, false),
        "/replica" => {
            get_only(state, req).and_then(|()| admin::replica::handle(&state.cluster, req))
        }
        "/rebalance" => {
            post_only(state, req).and_then(|()| endpoint::rebalance(&state.transfer, req))
        }
        "/recovery" => {
            post_only(state, req).and_then(|()| endpoint::recovery(&state.transfer, req))
        }
        "/resync" => post_only(state, req).and_then(|()| endpoint::resync(&state.transfer, req)),
        "/cleanup" | "/clear" => {
            post_only(state, req).and_then(|()| endpoint::cleanup(&state.transfer, req))
        }
        "/transfer/state" | "/migrate/state" => {
            get_or_post(state, req).and_then(|()| endpoint::state(&state.transfer, req, pretty))
        }
        "/transfer/stats" | "/migrate/stats" => get_only(state, req)
            .and_then(|()| endpoint::transfer_stats(&state.transfer, req, pretty)),
        _ => Ok(Response::not_found()),
    };
    result.unwrap_or_else(|e| e.into_response(pretty))
}

/// `/health`; with `stats=true` (exactly, as the Go proxy reads it) the
/// placement survey, which waits on backends (the query pool serves it).
fn health(state: &State, req: &Request, pretty: bool) -> Response {
    let stats = (req.params.get("stats") == "true").then(|| {
        let client = state.query.client();
        admin::placement::survey(client, &state.cluster, client.timeout())
    });
    admin::health::handle(
        &state.cluster,
        &state.write.writers,
        stats.as_deref(),
        pretty,
    )
}

fn ping(state: &State, req: &Request) -> Result<Response, ApiError> {
    if state.ping_auth {
        authenticate(state, req)?;
    }
    Ok(Response::no_content())
}

/// `/metrics`: any method; credentials only with `ping_auth_enabled`, as
/// `/ping`.
fn metrics(state: &State, req: &Request) -> Result<Response, ApiError> {
    if state.ping_auth {
        authenticate(state, req)?;
    }
    Ok(metrics::handle(state))
}

fn write(
    state: &State,
    scratch: &mut WriteScratch,
    req: &mut Request,
) -> Result<Response, ApiError> {
    post_only(state, req)?;
    Ok(state.write.handle(scratch, req)?)
}

fn write_v2(
    state: &State,
    scratch: &mut WriteScratch,
    req: &mut Request,
) -> Result<Response, ApiError> {
    post_only(state, req)?;
    Ok(state.write.handle_v2(scratch, req)?)
}

fn flux(state: &State, req: &mut Request) -> Result<Response, ApiError> {
    post_only(state, req)?;
    let limits = crate::flux::FluxLimits {
        max_body_size: state.write.max_body_size(),
        db_allowed: &|db| state.write.db_allowed(db),
    };
    crate::flux::handle(&state.query, &limits, req)
}

fn query(state: &State, req: &mut Request) -> Result<Response, ApiError> {
    get_or_post(state, req)?;
    state.query.handle(&state.write.writers, req)
}

/// `/encrypt?text=` and `/decrypt?key=consistentcipher&text=` (GET, no
/// auth, plain text answers), as the Go proxy has them; `msg` is the old
/// name of `text`.
fn cipher_text(req: &Request, encrypt: bool) -> Result<Response, ApiError> {
    if req.method != "GET" {
        return Err(ApiError::method_not_allowed());
    }
    let text = match req.params.get("text") {
        "" => req.params.get("msg"),
        t => t,
    };
    if encrypt {
        return Ok(Response::text(200, &crate::cipher::encrypt(text)));
    }
    if req.params.get("key") != "consistentcipher" {
        return Err(ApiError::bad_request("invalid key"));
    }
    let plain = crate::cipher::decrypt(text).unwrap_or_else(|e| e);
    Ok(Response::text(200, &plain))
}

fn get_only(state: &State, req: &Request) -> Result<(), ApiError> {
    if req.method != "GET" {
        return Err(ApiError::method_not_allowed());
    }
    authenticate(state, req)
}

fn post_only(state: &State, req: &Request) -> Result<(), ApiError> {
    if req.method != "POST" {
        return Err(ApiError::method_not_allowed());
    }
    authenticate(state, req)
}

fn get_or_post(state: &State, req: &Request) -> Result<(), ApiError> {
    if req.method != "GET" && req.method != "POST" {
        return Err(ApiError::method_not_allowed());
    }
    authenticate(state, req)
}

fn authenticate(state: &State, req: &Request) -> Result<(), ApiError> {
    match &state.auth {
        Some(auth) => auth.check(req),
        None => Ok(()),
    }
}
