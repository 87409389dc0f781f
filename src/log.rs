//! Log lines on stderr in the Go proxy's format:
//! `2006/01/02 15:04:05.000000 module: message` (UTC).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes one line; used through the [`log!`](crate::log!) macro.
pub fn write(module: &str, args: std::fmt::Arguments) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let line = format!(
        "{y:04}/{mo:02}/{d:02} {:02}:{:02}:{:02}.{:06} {module}: {args}\n",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_micros()
    );
    // A closed stderr must not take the proxy down.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(super::civil_from_days(-1), (1969, 12, 31));
    }
}
