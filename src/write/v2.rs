//! `POST /api/v2/write`: the InfluxDB 2.x write API as InfluxDB 1.8 maps it
//! onto 1.x, so Telegraf's `outputs.influxdb_v2` and the v2 client libraries
//! can write through the proxy.
//!
//! Only the parameters differ from `/write`: `bucket` is `db` or `db/rp` (a
//! plain `db` means its default retention policy, as in InfluxDB 1.8),
//! `org` is ignored, `precision` is one of `ns`, `us`, `ms`, `s` (`""` is
//! `ns`). Checks run in the Go proxy's order: precision (400), bucket (404,
//! the Go texts), then the database as `/write` checks it (forbidden: 400,
//! unknown to every backend: 404). The body then takes exactly the `/write`
//! path ([`WriteService::write_body`]): gzip, `max_body_size` before and
//! after gunzip, the spool, the 204 promise, influxd's partial-write 400s.

use super::endpoint::{go_quote, WriteError, WriteScratch, WriteService};
use super::line::Precision;
use crate::server::error::ApiError;
use crate::server::http::{Request, Response};

/// Why a v2 write was refused before its body was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2WriteError {
    InvalidPrecision(String),
    Bucket(BucketError),
    Write(WriteError),
}

/// A `bucket` that names no database (the Go proxy's and InfluxDB 1.8's
/// texts, answered with 404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketError {
    /// `""`: nothing at all.
    MissingSlash(String),
    /// `/rp`: a retention policy without a database.
    EmptyDatabase(String),
}

impl std::fmt::Display for BucketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BucketError::MissingSlash(b) => write!(
                f,
                "bucket name {} is missing a slash; not in \"database/retention-policy\" format",
                go_quote(b)
            ),
            BucketError::EmptyDatabase(b) => write!(
                f,
                "bucket name {} is in db/rp form but has an empty database",
                go_quote(b)
            ),
        }
    }
}

impl From<V2WriteError> for ApiError {
    fn from(e: V2WriteError) -> ApiError {
        match e {
            V2WriteError::InvalidPrecision(p) => ApiError::bad_request(format!(
                "invalid precision {} (use ns, us, ms or s)",
                go_quote(&p)
            )),
            V2WriteError::Bucket(b) => ApiError::new(404, b.to_string()),
            V2WriteError::Write(w) => w.into(),
        }
    }
}

impl From<WriteError> for V2WriteError {
    fn from(e: WriteError) -> V2WriteError {
        V2WriteError::Write(e)
    }
}

/// Splits a bucket into (database, retention policy) at its first `/`, as
/// InfluxDB 1.8 does: `db` is (`db`, `""`), `db/rp` is (`db`, `rp`), `db/`
/// is (`db`, `""`); everything after the first slash is the retention
/// policy.
pub fn bucket_to_db_rp(bucket: &str) -> Result<(&str, &str), BucketError> {
    match bucket.split_once('/') {
        None if bucket.is_empty() => Err(BucketError::MissingSlash(bucket.to_string())),
        None => Ok((bucket, "")),
        Some(("", _)) => Err(BucketError::EmptyDatabase(bucket.to_string())),
        Some((db, rp)) => Ok((db, rp)),
    }
}

/// The v2 `precision` parameter: `ns`, `us`, `ms`, `s`, or `""` for ns.
pub fn parse_precision(value: &str) -> Option<Precision> {
    match value {
        "" | "ns" => Some(Precision::Nanosecond),
        "us" => Some(Precision::Microsecond),
        "ms" => Some(Precision::Millisecond),
        "s" => Some(Precision::Second),
        _ => None,
    }
}

impl WriteService {
    /// Handles `/api/v2/write` once method and auth have been checked.
    pub fn handle_v2(
        &self,
        scratch: &mut WriteScratch,
        req: &mut Request,
    ) -> Result<Response, V2WriteError> {
        let precision_text = req.params.get("precision");
        let precision = parse_precision(precision_text)
            .ok_or_else(|| V2WriteError::InvalidPrecision(precision_text.to_string()))?;
        let bucket = req.params.get("bucket").to_string();
        let (db, rp) = bucket_to_db_rp(&bucket).map_err(V2WriteError::Bucket)?;
        self.check_db(db)?;
        Ok(self.write_body(scratch, req, db, rp, precision)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_as_influxdb_1_8_splits_them() {
        assert_eq!(bucket_to_db_rp("db"), Ok(("db", "")));
        assert_eq!(bucket_to_db_rp("db/rp"), Ok(("db", "rp")));
        assert_eq!(bucket_to_db_rp("db/"), Ok(("db", "")));
        assert_eq!(bucket_to_db_rp("db/rp/x"), Ok(("db", "rp/x")));
        assert_eq!(
            bucket_to_db_rp("").map_err(|e| e.to_string()),
            Err(
                r#"bucket name "" is missing a slash; not in "database/retention-policy" format"#
                    .into()
            )
        );
        assert_eq!(
            bucket_to_db_rp("/rp").map_err(|e| e.to_string()),
            Err(r#"bucket name "/rp" is in db/rp form but has an empty database"#.into())
        );
        assert_eq!(
            bucket_to_db_rp("/").map_err(|e| e.to_string()),
            Err(r#"bucket name "/" is in db/rp form but has an empty database"#.into())
        );
    }

    #[test]
    fn precisions_are_the_v2_names() {
        assert_eq!(parse_precision(""), Some(Precision::Nanosecond));
        assert_eq!(parse_precision("ns"), Some(Precision::Nanosecond));
        assert_eq!(parse_precision("us"), Some(Precision::Microsecond));
        assert_eq!(parse_precision("ms"), Some(Precision::Millisecond));
        assert_eq!(parse_precision("s"), Some(Precision::Second));
        for bad in ["n", "u", "m", "h", "NS", "seconds"] {
            assert_eq!(parse_precision(bad), None, "{bad}");
        }
        let e: ApiError = V2WriteError::InvalidPrecision("n".into()).into();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, r#"invalid precision "n" (use ns, us, ms or s)"#)
        );
    }
}
