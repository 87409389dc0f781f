//! Requests per endpoint: how many, by status code, and how long the
//! proxy took to answer (until the response was ready; a streamed query
//! answer's body may flow longer).
//!
//! Cardinality is bounded: the `path` label is one of the known endpoints
//! ([`Endpoint`], an alias counted under its current name) or `other`, and
//! the `code` label one of the statuses 100..=599 or `other`. Counting a
//! request is three relaxed atomic adds into memory allocated once at
//! start: no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::exposition::{Exposition, Kind};
use super::histogram::{Histogram, LE};

/// An endpoint as the `path` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Write,
    Query,
    Ping,
    Health,
    Replica,
    Metrics,
    V2Write,
    V2Query,
    PromWrite,
    PromRead,
    Rebalance,
    Recovery,
    Resync,
    Cleanup,
    TransferState,
    TransferStats,
    Other,
}

impl Endpoint {
    pub const ALL: [Endpoint; 17] = [
        Endpoint::Write,
        Endpoint::Query,
        Endpoint::Ping,
        Endpoint::Health,
        Endpoint::Replica,
        Endpoint::Metrics,
        Endpoint::V2Write,
        Endpoint::V2Query,
        Endpoint::PromWrite,
        Endpoint::PromRead,
        Endpoint::Rebalance,
        Endpoint::Recovery,
        Endpoint::Resync,
        Endpoint::Cleanup,
        Endpoint::TransferState,
        Endpoint::TransferStats,
        Endpoint::Other,
    ];

    /// The endpoint of a request path (exact, as the router matches).
    pub fn of(path: &str) -> Endpoint {
        match path {
            "/write" => Endpoint::Write,
            "/query" => Endpoint::Query,
            "/ping" => Endpoint::Ping,
            "/health" => Endpoint::Health,
            "/replica" => Endpoint::Replica,
            "/metrics" => Endpoint::Metrics,
            "/api/v2/write" => Endpoint::V2Write,
            "/api/v2/query" => Endpoint::V2Query,
            "/api/v1/prom/write" => Endpoint::PromWrite,
            "/api/v1/prom/read" => Endpoint::PromRead,
            "/rebalance" => Endpoint::Rebalance,
            "/recovery" => Endpoint::Recovery,
            "/resync" => Endpoint::Resync,
            "/cleanup" | "/clear" => Endpoint::Cleanup,
            "/transfer/state" | "/migrate/state" => Endpoint::TransferState,
            "/transfer/stats" | "/migrate/stats" => Endpoint::TransferStats,
            _ => Endpoint::Other,
        }
    }

    /// The `path` label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Write => "/write",
            Endpoint::Query => "/query",
            Endpoint::Ping => "/ping",
            Endpoint::Health => "/health",
            Endpoint::Replica => "/replica",
            Endpoint::Metrics => "/metrics",
            Endpoint::V2Write => "/api/v2/write",
            Endpoint::V2Query => "/api/v2/query",
            Endpoint::PromWrite => "/api/v1/prom/write",
            Endpoint::PromRead => "/api/v1/prom/read",
            Endpoint::Rebalance => "/rebalance",
            Endpoint::Recovery => "/recovery",
            Endpoint::Resync => "/resync",
            Endpoint::Cleanup => "/cleanup",
            Endpoint::TransferState => "/transfer/state",
            Endpoint::TransferStats => "/transfer/stats",
            Endpoint::Other => "other",
        }
    }
}

/// Lowest status code with a slot of its own.
const FIRST_CODE: u16 = 100;
/// Slots for the codes 100..=599.
const CODES: usize = 500;

/// One endpoint's counts.
#[derive(Debug)]
struct EndpointStats {
    /// Requests answered with code `FIRST_CODE + i`.
    by_code: [AtomicU64; CODES],
    /// Requests answered with a code outside 100..=599.
    odd_code: AtomicU64,
    latency: Histogram,
}

impl EndpointStats {
    fn new() -> EndpointStats {
        EndpointStats {
            by_code: [const { AtomicU64::new(0) }; CODES],
            odd_code: AtomicU64::new(0),
            latency: Histogram::new(),
        }
    }
}

/// Requests of every endpoint, shared by the workers and query threads.
#[derive(Debug)]
pub struct Requests {
    /// Indexed like [`Endpoint::ALL`]; on the heap (about 4 KiB each).
    endpoints: Box<[EndpointStats]>,
}

impl Default for Requests {
    fn default() -> Requests {
        Requests::new()
    }
}

impl Requests {
    pub fn new() -> Requests {
        Requests {
            endpoints: Endpoint::ALL.iter().map(|_| EndpointStats::new()).collect(),
        }
    }

    /// Counts a request of `endpoint` answered with `status` after `took`.
    pub fn observe(&self, endpoint: Endpoint, status: u16, took: Duration) {
        let Some(e) = self.endpoints.get(endpoint as usize) else {
            return;
        };
        let slot = status
            .checked_sub(FIRST_CODE)
            .and_then(|i| e.by_code.get(usize::from(i)));
        slot.unwrap_or(&e.odd_code).fetch_add(1, Ordering::Relaxed);
        e.latency.observe(took);
    }

    /// Requests of `endpoint` answered with `status` so far.
    pub fn count(&self, endpoint: Endpoint, status: u16) -> u64 {
        self.endpoints
            .get(endpoint as usize)
            .and_then(|e| {
                status
                    .checked_sub(FIRST_CODE)
                    .and_then(|i| e.by_code.get(usize::from(i)))
            })
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Writes `influxproxy_http_requests_total` and
    /// `influxproxy_http_request_duration_seconds`, for the endpoints that
    /// had a request.
    pub fn render(&self, out: &mut Exposition) {
        const REQUESTS: &str = "influxproxy_http_requests_total";
        const DURATION: &str = "influxproxy_http_request_duration_seconds";
        let used = || {
            Endpoint::ALL
                .iter()
                .zip(self.endpoints.iter())
                .filter(|(_, e)| e.latency.count() > 0)
        };
        out.family(
            REQUESTS,
            Kind::Counter,
            "HTTP requests answered, by endpoint (`other` for any unknown path) and status code.",
        );
        for (endpoint, e) in used() {
            let path = endpoint.label();
            for (status, n) in (FIRST_CODE..).zip(e.by_code.iter()) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let code = status.to_string();
                    out.sample(REQUESTS, &[("path", path), ("code", &code)], n);
                }
            }
            let odd = e.odd_code.load(Ordering::Relaxed);
            if odd > 0 {
                out.sample(REQUESTS, &[("path", path), ("code", "other")], odd);
            }
        }
        out.family(
            DURATION,
            Kind::Histogram,
            "Time from routing a request to its answer being ready, by endpoint.",
        );
        let bucket = format!("{DURATION}_bucket");
        let (sum, count) = (format!("{DURATION}_sum"), format!("{DURATION}_count"));
        for (endpoint, e) in used() {
            let path = endpoint.label();
            let s = e.latency.snapshot();
            for (le, n) in LE.iter().zip(s.cumulative) {
                out.sample(&bucket, &[("path", path), ("le", le)], n);
            }
            out.sample(&sum, &[("path", path)], s.sum_seconds);
            out.sample(&count, &[("path", path)], s.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_maps_back_to_itself_and_aliases_to_the_current_name() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
            if *e != Endpoint::Other {
                assert_eq!(Endpoint::of(e.label()), *e);
            }
        }
        assert_eq!(Endpoint::of("/clear"), Endpoint::Cleanup);
        assert_eq!(Endpoint::of("/migrate/stats"), Endpoint::TransferStats);
        assert_eq!(Endpoint::of("/write/"), Endpoint::Other);
        assert_eq!(Endpoint::of("/debug/pprof/"), Endpoint::Other);
    }

    #[test]
    fn requests_are_counted_by_code_with_a_matching_histogram() {
        let r = Requests::new();
        r.observe(Endpoint::Write, 204, Duration::from_millis(1));
        r.observe(Endpoint::Write, 204, Duration::from_millis(2));
        r.observe(Endpoint::Write, 400, Duration::from_millis(1));
        r.observe(Endpoint::Other, 404, Duration::ZERO);
        r.observe(Endpoint::Other, 999, Duration::ZERO);
        r.observe(Endpoint::Other, 42, Duration::ZERO);
        assert_eq!(r.count(Endpoint::Write, 204), 2);
        let mut out = Exposition::default();
        r.render(&mut out);
        let text = out.into_string();
        for line in [
            "influxproxy_http_requests_total{path=\"/write\",code=\"204\"} 2",
            "influxproxy_http_requests_total{path=\"/write\",code=\"400\"} 1",
            "influxproxy_http_requests_total{path=\"other\",code=\"404\"} 1",
            "influxproxy_http_requests_total{path=\"other\",code=\"other\"} 2",
            "influxproxy_http_request_duration_seconds_count{path=\"/write\"} 3",
            "influxproxy_http_request_duration_seconds_bucket{path=\"/write\",le=\"0.001\"} 2",
            "influxproxy_http_request_duration_seconds_bucket{path=\"/write\",le=\"+Inf\"} 3",
            "influxproxy_http_request_duration_seconds_count{path=\"other\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("/query"), "{text}");
    }
}
