//! `proxy.json` (or `.yaml`, `.yml`, `.toml`): the configuration, read and
//! validated once at start.
//!
//! Keys and defaults are the Go influx-proxy's (v2.5.12), plus its older names
//! (`mlog_dir`, `vnode_size`, `auth_secure`, `log_enabled`) and the keys this
//! proxy adds (`worker_threads`, `query_threads`, `max_body_size`, `spool_sync`,
//! `spool_max_size`, `spool_segment_size`, `query_timeout`,
//! `max_connections`, `max_header_size`, `backend_ca_file`,
//! `backend_insecure_skip_verify`).
//! The file's extension chooses its format ([`format`]); every format is read
//! into one JSON value first, so what follows is the same for all three.
//! As in the Go proxy, a numeric value <= 0, an empty string or a `null`
//! means "use the default". Unknown keys are reported as warnings, not
//! errors, so a config written for a newer Go proxy still starts. Every
//! known key's type is checked first (`KEYS`), so a value of the wrong type
//! is refused with its path (`circles[0].backends[1].url`) and the type the
//! key takes. Then an old name is folded into its new one (`ALIASES`,
//! `log_enabled`): a file giving both is accepted when they agree, as the Go
//! proxy accepts it, and refused naming both when they differ.
//!
//! After [`Config::load`] returns, the configuration is plain data: nothing
//! reads the file again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

pub mod format;
pub use format::Format;

use crate::ring::{HashKey, ShardKey, DEFAULT_REPLICAS};

/// A configuration problem; the message names the key at fault.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read(PathBuf, std::io::Error),
    /// The file is not a well-formed document of its format.
    Parse(PathBuf, String),
    /// A value has the wrong type; `key` is its path.
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    /// A value breaks a rule; `key` is the JSON path of the value.
    Invalid { key: String, message: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(path, e) => write!(
                f,
                "illegal config file: cannot read {}: {e} (pass the file with -config FILE)",
                path.display()
            ),
            ConfigError::Parse(path, e) => {
                write!(f, "illegal config file: {}: {e}", path.display())
            }
            ConfigError::WrongType {
                key,
                expected,
                found,
            } => write!(
                f,
                "illegal config file: expected {expected}, found {found} (key `{key}`)"
            ),
            ConfigError::Invalid { key, message } => {
                write!(f, "illegal config file: {message} (key `{key}`)")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// One InfluxDB server of a circle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub name: String,
    pub url: String,
    pub username: String,
    pub password: String,
    pub auth_encrypt: bool,
    pub write_only: bool,
}

/// A full copy of the data, spread over its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircleConfig {
    pub name: String,
    pub backends: Vec<BackendConfig>,
}

/// `tls.*` keys of the HTTPS listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub ciphers: Vec<String>,
    pub min_version: String,
    pub max_version: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub circles: Vec<CircleConfig>,
    pub listen_addr: String,
    pub db_list: Vec<String>,
    pub data_dir: PathBuf,
    pub tlog_dir: PathBuf,
    pub hash_key: HashKey,
    pub shard_key: ShardKey,
    pub vnode_size: usize,
    pub flush_size: usize,
    pub flush_time: Duration,
    pub check_interval: Duration,
    pub rewrite_interval: Duration,
    pub rewrite_threads: usize,
    pub conn_pool_size: usize,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub username: String,
    pub password: String,
    pub auth_encrypt: bool,
    pub ping_auth_enabled: bool,
    pub write_tracing: bool,
    pub query_tracing: bool,
    pub pprof_enabled: bool,
    pub https_enabled: bool,
    pub https_cert: String,
    pub https_key: String,
    pub tls: TlsConfig,
    /// Threads that take requests from the listener (ours; default: one per
    /// core, plus one).
    pub worker_threads: usize,
    /// Most threads that wait on backends for `/query` and `/replica` at
    /// once (ours; started as needed).
    pub query_threads: usize,
    /// Largest request body accepted, before and after gunzip (ours).
    pub max_body_size: usize,
    /// When appended spool records are forced to disk (ours).
    pub spool_sync: crate::spool::SyncMode,
    /// Undelivered bytes each backend's spool may hold (ours).
    pub spool_max_size: u64,
    /// Size of one spool segment file (ours).
    pub spool_segment_size: u64,
    /// Longest a backend may take to answer a query (ours).
    pub query_timeout: Duration,
    /// Open client connections beyond which new ones get a 503 (ours).
    pub max_connections: usize,
    /// Largest request line plus headers a client may send (ours).
    pub max_header_size: usize,
    /// PEM file of the CAs that sign `https://` backends' certificates;
    /// empty: Mozilla's roots (ours).
    pub backend_ca_file: String,
    /// Accept any certificate from `https://` backends, as the Go proxy
    /// does (ours; off by default).
    pub backend_insecure_skip_verify: bool,
}

/// Largest `/write` body by default: InfluxDB's own `max-body-size`.
pub const DEFAULT_MAX_BODY_SIZE: usize = 25_000_000;
/// Undelivered bytes a backend's spool may hold by default.
pub const DEFAULT_SPOOL_MAX_SIZE: u64 = 1 << 30;
/// Open client connections by default: each holds a thread in tiny_http.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default of `query_threads`: queries that wait on backends at once.
pub const DEFAULT_QUERY_THREADS: usize = 64;
/// Request line plus headers by default: ample for any InfluxDB client.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;

/// The JSON type a key takes, checked before the values are read so that a
/// value of the wrong type is reported with its key's full path.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Number,
    String,
    Bool,
    List(&'static Kind),
    /// An object whose known keys have these kinds (others are ignored).
    Object(&'static [(&'static str, Kind)]),
}

impl Kind {
    /// The type as the error message names it.
    fn expected(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Bool => "a boolean",
            Kind::List(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (Kind::Number, Value::Number(_))
                | (Kind::String, Value::String(_))
                | (Kind::Bool, Value::Bool(_))
                | (Kind::List(_), Value::Array(_))
                | (Kind::Object(_), Value::Object(_))
        )
    }
}

/// What a JSON value is, for "found ..." in an error message.
fn found(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", Value::String(s.clone())),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The first value under `value` (at `path`) whose type `kind` does not take.
fn check_kinds(value: &Value, kind: Kind, path: &str) -> Result<(), ConfigError> {
    if !kind.accepts(value) {
        return Err(ConfigError::WrongType {
            key: path.to_string(),
            expected: kind.expected(),
            found: found(value),
        });
    }
    match (kind, value) {
        (Kind::List(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                check_kinds(v, *item, &format!("{path}[{i}]"))?;
            }
        }
        (Kind::Object(keys), Value::Object(map)) => {
            for (key, kind) in keys {
                // A null member is unset: the key's default.
                if let Some(v) = map.get(*key).filter(|v| !v.is_null()) {
                    let sub = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    check_kinds(v, *kind, &sub)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

const BACKEND_KEYS: &[(&str, Kind)] = &[
    ("name", Kind::String),
    ("url", Kind::String),
    ("username", Kind::String),
    ("password", Kind::String),
    ("auth_encrypt", Kind::Bool),
    ("auth_secure", Kind::Bool),
    ("write_only", Kind::Bool),
];

const CIRCLE_KEYS: &[(&str, Kind)] = &[
    ("name", Kind::String),
    ("backends", Kind::List(&Kind::Object(BACKEND_KEYS))),
];

const TLS_KEYS: &[(&str, Kind)] = &[
    ("ciphers", Kind::List(&Kind::String)),
    ("min_version", Kind::String),
    ("max_version", Kind::String),
];

/// Every top-level key we know, including the old aliases, with its type.
const KEYS: &[(&str, Kind)] = &[
    ("circles", Kind::List(&Kind::Object(CIRCLE_KEYS))),
    ("listen_addr", Kind::String),
    ("db_list", Kind::List(&Kind::String)),
    ("data_dir", Kind::String),
    ("tlog_dir", Kind::String),
    ("mlog_dir", Kind::String),
    ("hash_key", Kind::String),
    ("shard_key", Kind::String),
    ("vnode_size", Kind::Number),
    ("flush_size", Kind::Number),
    ("flush_time", Kind::Number),
    ("check_interval", Kind::Number),
    ("rewrite_interval", Kind::Number),
    ("rewrite_threads", Kind::Number),
    ("conn_pool_size", Kind::Number),
    ("write_timeout", Kind::Number),
    ("idle_timeout", Kind::Number),
    ("username", Kind::String),
    ("password", Kind::String),
    ("auth_encrypt", Kind::Bool),
    ("auth_secure", Kind::Bool),
    ("ping_auth_enabled", Kind::Bool),
    ("write_tracing", Kind::Bool),
    ("query_tracing", Kind::Bool),
    ("log_enabled", Kind::Bool),
    ("pprof_enabled", Kind::Bool),
    ("https_enabled", Kind::Bool),
    ("https_cert", Kind::String),
    ("https_key", Kind::String),
    ("tls", Kind::Object(TLS_KEYS)),
    ("worker_threads", Kind::Number),
    ("query_threads", Kind::Number),
    ("max_body_size", Kind::Number),
    ("spool_sync", Kind::String),
    ("spool_max_size", Kind::Number),
    ("spool_segment_size", Kind::Number),
    ("query_timeout", Kind::Number),
    ("max_connections", Kind::Number),
    ("max_header_size", Kind::Number),
    ("backend_ca_file", Kind::String),
    ("backend_insecure_skip_verify", Kind::Bool),
];

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawBackend {
    name: String,
    url: String,
    username: String,
    password: String,
    auth_encrypt: bool,
    write_only: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCircle {
    name: String,
    backends: Vec<RawBackend>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawTls {
    ciphers: Vec<String>,
    min_version: String,
    max_version: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    circles: Vec<RawCircle>,
    listen_addr: String,
    db_list: Vec<String>,
    data_dir: String,
    tlog_dir: String,
    hash_key: String,
    shard_key: String,
    vnode_size: f64,
    flush_size: f64,
    flush_time: f64,
    check_interval: f64,
    rewrite_interval: f64,
    rewrite_threads: f64,
    conn_pool_size: f64,
    write_timeout: f64,
    idle_timeout: f64,
    username: String,
    password: String,
    auth_encrypt: bool,
    ping_auth_enabled: bool,
    write_tracing: bool,
    query_tracing: bool,
    pprof_enabled: bool,
    https_enabled: bool,
    https_cert: String,
    https_key: String,
    tls: RawTls,
    worker_threads: f64,
    query_threads: f64,
    max_body_size: f64,
    spool_sync: String,
    spool_max_size: f64,
    spool_segment_size: f64,
    query_timeout: f64,
    max_connections: f64,
    max_header_size: f64,
    backend_ca_file: String,
    backend_insecure_skip_verify: bool,
}

/// Removes every `null` member of every object under `value`: a null key
/// is unset, and gets its default (as an absent one, and as in the Go proxy).
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Old names of keys, (old, new), at the top level and in every backend.
const ALIASES: &[(&str, &str)] = &[("auth_secure", "auth_encrypt"), ("mlog_dir", "tlog_dir")];
const BACKEND_ALIASES: &[(&str, &str)] = &[("auth_secure", "auth_encrypt")];
/// `log_enabled` (before v2.5.2) is the old name of both tracing keys.
const LOG_ENABLED: &str = "log_enabled";
const TRACING: [&str; 2] = ["write_tracing", "query_tracing"];

/// Replaces every old key name by its new one. Both given: accepted when
/// they agree, refused with both names when they differ. Runs after the
/// type check (an old name's type is checked under that name) and after
/// `drop_nulls` (a null old name is no value).
fn fold_old_names(value: &mut Value) -> Result<(), ConfigError> {
    let Value::Object(top) = value else {
        return Ok(());
    };
    fold(top, ALIASES, "")?;
    if let Some(old) = top.remove(LOG_ENABLED) {
        for new in TRACING {
            fold_one(top, (LOG_ENABLED, new), old.clone(), "")?;
        }
    }
    if let Some(Value::Array(circles)) = top.get_mut("circles") {
        for (ci, circle) in circles.iter_mut().enumerate() {
            if let Some(Value::Array(backends)) = circle.get_mut("backends") {
                for (bi, backend) in backends.iter_mut().enumerate() {
                    if let Value::Object(b) = backend {
                        fold(b, BACKEND_ALIASES, &format!("circles[{ci}].backends[{bi}]"))?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn fold(
    map: &mut Map<String, Value>,
    pairs: &[(&str, &str)],
    path: &str,
) -> Result<(), ConfigError> {
    for &(old, new) in pairs {
        if let Some(value) = map.remove(old) {
            fold_one(map, (old, new), value, path)?;
        }
    }
    Ok(())
}

/// Sets `new` to `value`, the value of the old name, unless `new` is given:
/// then both must be equal.
fn fold_one(
    map: &mut Map<String, Value>,
    (old, new): (&str, &str),
    value: Value,
    path: &str,
) -> Result<(), ConfigError> {
    match map.get(new) {
        None => {
            map.insert(new.to_string(), value);
            Ok(())
        }
        Some(given) if *given == value => Ok(()),
        Some(given) => {
            let key = if path.is_empty() {
                old.to_string()
            } else {
                format!("{path}.{old}")
            };
            Err(invalid(
                key,
                format!(
                    "`{old}` (old name) is {value} but `{new}` is {given}: \
                     they name one setting, give one of them"
                ),
            ))
        }
    }
}

fn or_default_str(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_string()
    } else {
        value
    }
}

fn or_default_count(value: f64, default: usize) -> usize {
    if value <= 0.0 || !value.is_finite() {
        default
    } else {
        value as usize
    }
}

fn or_default_secs(value: f64, default: u64) -> Duration {
    if value <= 0.0 || !value.is_finite() {
        Duration::from_secs(default)
    } else {
        Duration::from_secs_f64(value)
    }
}

const TLS_VERSIONS: &[&str] = &[
    "ssl3.0", "tls1.0", "tls1.1", "tls1.2", "tls1.3", "1.0", "1.1", "1.2", "1.3",
];

impl Config {
    /// Reads, parses and validates the file at `path`, written in the
    /// format its extension names ([`Format::of`]). Also returns warnings
    /// (unknown keys) for the caller to log.
    pub fn load(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let format = Format::of(path).map_err(|e| ConfigError::Parse(path.to_path_buf(), e))?;
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        Config::from_text(&text, format).map_err(|e| match e {
            ConfigError::Parse(_, m) => ConfigError::Parse(path.to_path_buf(), m),
            other => other,
        })
    }

    /// Parses and validates a JSON document.
    pub fn from_json(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        Config::from_text(text, Format::Json)
    }

    /// Parses and validates a document written in `format`.
    pub fn from_text(text: &str, format: Format) -> Result<(Config, Vec<String>), ConfigError> {
        let value = format::parse(text, format).map_err(|e| match e {
            format::FormatError::Syntax(m) => ConfigError::Parse(PathBuf::new(), m),
            format::FormatError::Value { key, message } => invalid(key, message),
        })?;
        let mut value = match value {
            // An empty YAML document: no keys.
            Value::Null => Value::Object(Map::new()),
            v => v,
        };
        let Value::Object(map) = &value else {
            return Err(ConfigError::Parse(
                PathBuf::new(),
                format!(
                    "the top level must be a {} of keys",
                    if format == Format::Json {
                        "JSON object"
                    } else {
                        "mapping"
                    }
                ),
            ));
        };
        let warnings = map
            .keys()
            .filter(|k| !KEYS.iter().any(|(known, _)| known == k))
            .map(|k| format!("unknown config key `{k}` ignored"))
            .collect();
        check_kinds(&value, Kind::Object(KEYS), "")?;
        drop_nulls(&mut value);
        fold_old_names(&mut value)?;
        let raw: RawConfig = serde_json::from_value(value)
            .map_err(|e| ConfigError::Parse(PathBuf::new(), e.to_string()))?;
        Ok((Config::validate(raw)?, warnings))
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        if raw.circles.is_empty() {
            return Err(invalid("circles", "circles cannot be empty"));
        }
        let mut names = std::collections::HashSet::new();
        let mut circles = Vec::with_capacity(raw.circles.len());
        for (ci, circle) in raw.circles.into_iter().enumerate() {
            if circle.name.is_empty() {
                return Err(invalid(
                    format!("circles[{ci}].name"),
                    "circle name cannot be empty",
                ));
            }
            if circle.backends.is_empty() {
                return Err(invalid(
                    format!("circles[{ci}].backends"),
                    "backends cannot be empty",
                ));
            }
            let mut backends = Vec::with_capacity(circle.backends.len());
            for (bi, b) in circle.backends.into_iter().enumerate() {
                let key = format!("circles[{ci}].backends[{bi}]");
                if b.name.is_empty() {
                    return Err(invalid(
                        format!("{key}.name"),
                        "backend name cannot be empty",
                    ));
                }
                if !names.insert(b.name.clone()) {
                    return Err(invalid(
                        format!("{key}.name"),
                        format!("backend name duplicated: {}", b.name),
                    ));
                }
                let url = b.url.trim_end_matches('/').to_string();
                let host = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                    return Err(invalid(
                        format!("{key}.url"),
                        format!(
                            "invalid backend url {:?}, require http://host:port or https://host:port",
                            b.url
                        ),
                    ));
                }
                backends.push(BackendConfig {
                    name: b.name,
                    url,
                    username: b.username,
                    password: b.password,
                    auth_encrypt: b.auth_encrypt,
                    write_only: b.write_only,
                });
            }
            circles.push(CircleConfig {
                name: circle.name,
                backends,
            });
        }

        let hash_key_text = or_default_str(raw.hash_key, "idx");
        let hash_key = HashKey::parse(&hash_key_text).ok_or_else(|| {
            invalid(
                "hash_key",
                "invalid hash_key, require idx, exi, name, url or template containing %idx",
            )
        })?;
        let shard_key_text = or_default_str(raw.shard_key, "%db,%mm");
        let shard_key = ShardKey::parse(&shard_key_text).ok_or_else(|| {
            invalid(
                "shard_key",
                "invalid shard_key, require template containing %db or %mm",
            )
        })?;

        for v in [&raw.tls.min_version, &raw.tls.max_version] {
            if !v.is_empty() && !TLS_VERSIONS.contains(&v.to_ascii_lowercase().as_str()) {
                let key = if std::ptr::eq(v, &raw.tls.min_version) {
                    "tls.min_version"
                } else {
                    "tls.max_version"
                };
                return Err(invalid(key, format!("unknown tls version: {v}")));
            }
        }
        if let Some(name) = raw
            .tls
            .ciphers
            .iter()
            .find(|n| crate::server::tls::suite_by_go_name(n).is_none())
        {
            return Err(invalid(
                "tls.ciphers",
                format!("unknown cipher suite: {name}"),
            ));
        }
        if raw.https_enabled && (raw.https_cert.is_empty() || raw.https_key.is_empty()) {
            return Err(invalid(
                "https_cert",
                "https_enabled requires https_cert and https_key",
            ));
        }

        let spool_sync = crate::spool::SyncMode::parse(&raw.spool_sync).ok_or_else(|| {
            invalid(
                "spool_sync",
                format!(
                    "invalid spool_sync {:?}, require none, interval or always",
                    raw.spool_sync
                ),
            )
        })?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Ok(Config {
            circles,
            listen_addr: or_default_str(raw.listen_addr, ":7076"),
            db_list: raw.db_list.into_iter().filter(|d| !d.is_empty()).collect(),
            data_dir: PathBuf::from(or_default_str(raw.data_dir, "spool")),
            tlog_dir: PathBuf::from(or_default_str(raw.tlog_dir, "log")),
            hash_key,
            shard_key,
            vnode_size: or_default_count(raw.vnode_size, DEFAULT_REPLICAS),
            flush_size: or_default_count(raw.flush_size, 10_000),
            flush_time: or_default_secs(raw.flush_time, 1),
            check_interval: or_default_secs(raw.check_interval, 1),
            rewrite_interval: or_default_secs(raw.rewrite_interval, 10),
            rewrite_threads: or_default_count(raw.rewrite_threads, 5),
            conn_pool_size: or_default_count(raw.conn_pool_size, 20),
            write_timeout: or_default_secs(raw.write_timeout, 10),
            idle_timeout: or_default_secs(raw.idle_timeout, 10),
            username: raw.username,
            password: raw.password,
            auth_encrypt: raw.auth_encrypt,
            ping_auth_enabled: raw.ping_auth_enabled,
            write_tracing: raw.write_tracing,
            query_tracing: raw.query_tracing,
            pprof_enabled: raw.pprof_enabled,
            https_enabled: raw.https_enabled,
            https_cert: raw.https_cert,
            https_key: raw.https_key,
            tls: TlsConfig {
                ciphers: raw.tls.ciphers,
                min_version: raw.tls.min_version,
                max_version: raw.tls.max_version,
            },
            // One per core, and one more that keeps writes moving while
            // every other worker waits on a backend (see server::query_pool).
            worker_threads: or_default_count(raw.worker_threads, cores + 1),
            query_threads: or_default_count(raw.query_threads, DEFAULT_QUERY_THREADS),
            max_body_size: or_default_count(raw.max_body_size, DEFAULT_MAX_BODY_SIZE),
            spool_sync,
            spool_max_size: or_default_count(raw.spool_max_size, DEFAULT_SPOOL_MAX_SIZE as usize)
                as u64,
            spool_segment_size: or_default_count(
                raw.spool_segment_size,
                crate::spool::DEFAULT_SEGMENT_SIZE as usize,
            ) as u64,
            query_timeout: or_default_secs(raw.query_timeout, 60),
            max_connections: or_default_count(raw.max_connections, DEFAULT_MAX_CONNECTIONS),
            max_header_size: or_default_count(raw.max_header_size, DEFAULT_MAX_HEADER_SIZE),
            backend_ca_file: raw.backend_ca_file,
            backend_insecure_skip_verify: raw.backend_insecure_skip_verify,
        })
    }

    /// The address to bind: the Go form `:7076` means every interface.
    pub fn bind_addr(&self) -> String {
        if self.listen_addr.starts_with(':') {
            format!("0.0.0.0{}", self.listen_addr)
        } else {
            self.listen_addr.clone()
        }
    }

    /// Whether clients must authenticate.
    pub fn auth_enabled(&self) -> bool {
        !self.username.is_empty() || !self.password.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str =
        r#"{"circles":[{"name":"c","backends":[{"name":"b","url":"http://127.0.0.1:8086"}]}]}"#;

    fn err(text: &str) -> String {
        Config::from_json(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_match_the_go_proxy_except_data_dir() {
        let (c, w) = Config::from_json(MIN).unwrap();
        assert!(w.is_empty());
        assert_eq!(c.listen_addr, ":7076");
        assert_eq!(c.data_dir, PathBuf::from("spool"));
        assert_eq!(c.tlog_dir, PathBuf::from("log"));
        assert_eq!(c.hash_key, HashKey::Idx);
        assert_eq!(c.shard_key.to_string(), "%db,%mm");
        assert_eq!(c.vnode_size, 256);
        assert_eq!(c.flush_size, 10_000);
        assert_eq!(c.flush_time, Duration::from_secs(1));
        assert_eq!(c.check_interval, Duration::from_secs(1));
        assert_eq!(c.rewrite_interval, Duration::from_secs(10));
        assert_eq!(c.rewrite_threads, 5);
        assert_eq!(c.conn_pool_size, 20);
        assert_eq!(c.write_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(10));
        assert!(c.worker_threads >= 1);
        assert_eq!(c.query_threads, DEFAULT_QUERY_THREADS);
        assert!(!c.auth_enabled());
    }

    #[test]
    fn old_key_names_are_aliases() {
        let text = r#"{"circles":[{"name":"c","backends":[{"name":"b","url":"http://h:1","auth_secure":true}]}],
            "mlog_dir":"ml","vnode_size":100,"auth_secure":true,"log_enabled":true}"#;
        let (c, w) = Config::from_json(text).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.tlog_dir, PathBuf::from("ml"));
        assert_eq!(c.vnode_size, 100);
        assert!(c.auth_encrypt && c.circles[0].backends[0].auth_encrypt);
        assert!(c.write_tracing && c.query_tracing);
    }

    #[test]
    fn old_and_new_names_given_together_must_agree() {
        let b = |extra: &str| {
            format!(
                r#"{{"circles":[{{"name":"c","backends":[{{"name":"a","url":"http://h:1"}},
                {{"name":"b","url":"http://h:2"{extra}}}]}}]"#
            )
        };
        // Agreeing pairs (the Go proxy accepts them): one setting.
        let agree = b(r#","auth_secure":true,"auth_encrypt":true"#)
            + r#","auth_secure":false,"auth_encrypt":false,"mlog_dir":"l","tlog_dir":"l",
                "log_enabled":true,"write_tracing":true}"#;
        let (c, w) = Config::from_json(&agree).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert!(c.circles[0].backends[1].auth_encrypt && !c.auth_encrypt);
        assert_eq!(c.tlog_dir, PathBuf::from("l"));
        assert!(c.write_tracing && c.query_tracing);
        // Conflicting pairs: refused with both names and the old one's path.
        let cases = [
            (
                b(r#","auth_secure":true,"auth_encrypt":false"#) + "}",
                "circles[0].backends[1].auth_secure",
                ["`auth_secure`", "`auth_encrypt`"],
            ),
            (
                b("") + r#","auth_secure":false,"auth_encrypt":true}"#,
                "auth_secure",
                ["`auth_secure`", "`auth_encrypt`"],
            ),
            (
                b("") + r#","mlog_dir":"a","tlog_dir":"b"}"#,
                "mlog_dir",
                ["`mlog_dir`", "`tlog_dir`"],
            ),
            (
                b("") + r#","log_enabled":true,"query_tracing":false}"#,
                "log_enabled",
                ["`log_enabled`", "`query_tracing`"],
            ),
        ];
        for (text, key, names) in cases {
            let e = err(&text);
            assert!(e.contains(&format!("(key `{key}`)")), "{e}");
            for n in names {
                assert!(e.contains(n), "{e} lacks {n}");
            }
        }
        // log_enabled with one tracing key agreeing sets the other too.
        let one = b("") + r#","log_enabled":false,"write_tracing":false}"#;
        let (c, _) = Config::from_json(&one).unwrap();
        assert!(!c.write_tracing && !c.query_tracing);
    }

    #[test]
    fn null_means_default_and_a_key_given_twice_is_refused() {
        let text = MIN.replace(
            "]}]}",
            "]}],\"listen_addr\":null,\"flush_size\":null,\"log_enabled\":null,\"tls\":null}",
        );
        let (c, _) = Config::from_json(&text).unwrap();
        assert_eq!(c.listen_addr, ":7076");
        assert_eq!(c.flush_size, 10_000);
        assert!(!c.write_tracing);
        let twice = MIN.replace("]}]}", "]}],\"flush_size\":1,\"flush_size\":2}");
        assert!(err(&twice).contains("duplicate key `flush_size`"));
        // A list item is not a key: null there is a wrong type.
        let item = MIN.replace("]}]}", "]}],\"db_list\":[\"a\",null]}");
        assert!(err(&item).contains("found null (key `db_list[1]`)"));
    }

    #[test]
    fn non_positive_numbers_and_empty_strings_mean_default() {
        let text = r#"{"circles":[{"name":"c","backends":[{"name":"b","url":"http://h:1"}]}],
            "flush_size":0,"flush_time":-1,"listen_addr":"","hash_key":""}"#;
        let (c, _) = Config::from_json(text).unwrap();
        assert_eq!(c.flush_size, 10_000);
        assert_eq!(c.flush_time, Duration::from_secs(1));
        assert_eq!(c.listen_addr, ":7076");
    }

    #[test]
    fn validation_names_the_key() {
        assert!(err(r#"{"circles":[]}"#).contains("circles cannot be empty (key `circles`)"));
        assert!(err(r#"{"circles":[{"name":"c","backends":[]}]}"#)
            .contains("backends cannot be empty (key `circles[0].backends`)"));
        assert!(
            err(r#"{"circles":[{"name":"c","backends":[{"url":"http://h:1"}]}]}"#)
                .contains("backend name cannot be empty (key `circles[0].backends[0].name`)")
        );
        let dup = r#"{"circles":[{"name":"c","backends":[{"name":"b","url":"http://h:1"}]},
                                 {"name":"d","backends":[{"name":"b","url":"http://h:2"}]}]}"#;
        assert!(err(dup).contains("backend name duplicated: b (key `circles[1].backends[0].name`)"));
        let bad_hash = MIN.replace("]}]}", "]}],\"hash_key\":\"nope\"}");
        assert!(err(&bad_hash).contains("invalid hash_key"));
        let bad_shard = MIN.replace("]}]}", "]}],\"shard_key\":\"static\"}");
        assert!(
            err(&bad_shard).contains("invalid shard_key, require template containing %db or %mm")
        );
        let bad_url = MIN.replace("http://127.0.0.1:8086", "127.0.0.1:8086");
        assert!(err(&bad_url).contains("key `circles[0].backends[0].url`"));
        let bad_tls = MIN.replace("]}]}", "]}],\"tls\":{\"min_version\":\"tls9\"}}");
        assert!(err(&bad_tls).contains("unknown tls version: tls9 (key `tls.min_version`)"));
        let bad_sync = MIN.replace("]}]}", "]}],\"spool_sync\":\"sometimes\"}");
        assert!(err(&bad_sync).contains("(key `spool_sync`)"));
        assert!(err("{").contains("illegal config file"));
        assert!(err(r#"{"circles":"x"}"#).contains("illegal config file"));
    }

    #[test]
    fn unknown_keys_warn() {
        let text = MIN.replace("]}]}", "]}],\"colour\":1}");
        let (_, w) = Config::from_json(&text).unwrap();
        assert_eq!(w, vec!["unknown config key `colour` ignored".to_string()]);
    }

    #[test]
    fn bind_addr_expands_go_form() {
        let (c, _) = Config::from_json(MIN).unwrap();
        assert_eq!(c.bind_addr(), "0.0.0.0:7076");
    }
}
