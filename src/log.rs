//! Log lines on stderr in the Go proxy's format:
//! `2006/01/02 15:04:05.000000 module: message` (UTC).
//!
//! Our own lines go through the [`log!`](crate::log!) macro. The
//! dependencies (tiny_http, ureq, rustls) log through the `log` facade;
//! [`install`] routes their records into the same format, tagged with the
//! record's target and level (`[rustls::common_state] warn: ...`). Only
//! warnings and errors by default, so the hot path is never spammed; the
//! environment variable `INFLUX_PROXY_LOG_LEVEL` (`error`, `warn`, `info`,
//! `debug`, `trace`, `off`) sets another level for them.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes one line; used through the [`log!`](crate::log!) macro.
pub fn write(module: &str, args: std::fmt::Arguments) {
    emit(format_args!("{module}: {args}"));
}

/// The environment variable that sets the level of dependencies' records.
pub const LEVEL_VAR: &str = "INFLUX_PROXY_LOG_LEVEL";

/// Installs the `log` facade's logger (once; a second call changes
/// nothing), at the level `INFLUX_PROXY_LOG_LEVEL` names, warn by default.
/// Returns the level, or the error message for a value it does not know
/// (warn is then used).
pub fn install() -> Result<::log::LevelFilter, String> {
    let parsed = match std::env::var(LEVEL_VAR) {
        Err(_) => Ok(::log::LevelFilter::Warn),
        Ok(v) => v.parse::<::log::LevelFilter>().map_err(|_| {
            format!("{LEVEL_VAR}={v:?} is not a level (error, warn, info, debug, trace, off): warn is used")
        }),
    };
    if ::log::set_logger(&FACADE).is_ok() {
        ::log::set_max_level(*parsed.as_ref().unwrap_or(&::log::LevelFilter::Warn));
    }
    parsed
}

/// The logger the facade calls: each record becomes one of our lines.
struct Facade;

static FACADE: Facade = Facade;

impl ::log::Log for Facade {
    fn enabled(&self, metadata: &::log::Metadata) -> bool {
        metadata.level() <= ::log::max_level()
    }

    fn log(&self, record: &::log::Record) {
        if self.enabled(record.metadata()) {
            emit(format_args!("{}", Dependency(record)));
        }
    }

    fn flush(&self) {}
}

/// A dependency's record as the text after our timestamp.
struct Dependency<'a, 'b>(&'a ::log::Record<'b>);

impl std::fmt::Display for Dependency<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.0;
        let level = match r.level() {
            ::log::Level::Error => "error",
            ::log::Level::Warn => "warn",
            ::log::Level::Info => "info",
            ::log::Level::Debug => "debug",
            ::log::Level::Trace => "trace",
        };
        write!(f, "[{}] {level}: {}", r.target(), r.args())
    }
}

/// Writes `text` after the timestamp, as one line.
fn emit(text: std::fmt::Arguments) {
    let line = format!("{} {text}\n", timestamp());
    // A closed stderr must not take the proxy down.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The current time as our lines start: `2006/01/02 15:04:05.000000` (UTC).
pub fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}/{mo:02}/{d:02} {:02}:{:02}:{:02}.{:06}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `log!("message {}", x)`: one line tagged with the calling module.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::write(module_path!().trim_start_matches("influx_proxy::"), format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn dependency_records_name_their_target_and_level() {
        let args = format_args!("TLS alert warning received: {}", 90);
        let record = ::log::Record::builder()
            .level(::log::Level::Warn)
            .target("rustls::common_state")
            .args(args)
            .build();
        assert_eq!(
            super::Dependency(&record).to_string(),
            "[rustls::common_state] warn: TLS alert warning received: 90"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(super::civil_from_days(-1), (1969, 12, 31));
    }
}
