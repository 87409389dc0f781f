//! `GET /replica?db=D&mm=M`: which backend holds (D, M) in every circle.

use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::server::error::ApiError;
use crate::server::http::{Request, Response};

pub fn handle(cluster: &Cluster, req: &Request) -> Result<Response, ApiError> {
    let db = req.params.get("db");
    let mm = match req.params.get("mm") {
        "" => req.params.get("meas"),
        mm => mm,
    };
    if db.is_empty() || mm.is_empty() {
        return Err(ApiError::bad_request("invalid db or mm"));
    }
    let body: Vec<Value> = cluster
        .replicas(db, mm)
        .into_iter()
        .map(|b| {
            let c = &cluster.circles[b.circle];
            json!({
                "backend": {"name": b.name, "url": b.url},
                "circle": {"id": c.id, "name": c.name},
            })
        })
        .collect();
    Ok(Response::json(200, &body, req.pretty()))
}
