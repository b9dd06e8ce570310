//! Wall-clock time as Unix seconds and RFC 3339 UTC text, for state and audit records,
//! and back from that text (approval statements) and from OpenSSH's timestamps
//! (`allowed_signers` validity).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch now (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds `secs`.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SSZ` exactly as [`rfc3339`] writes it; `None` for
/// any other text, an impossible date or time, or an instant before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let shape = b.len() == 20
        && text.is_ascii()
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    if !shape {
        return None;
    }
    let field = |from: usize, to: usize| digits(&text[from..to]);
    unix_seconds(
        field(0, 4)?,
        field(5, 7)?,
        field(8, 10)?,
        field(11, 13)?,
        field(14, 16)?,
        field(17, 19)?,
    )
}

/// Unix seconds of an OpenSSH UTC timestamp as `allowed_signers` writes validity:
/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, each followed by `Z`. `None` for a
/// local time (no `Z`: it would mean another instant on each machine) or bad text.
pub fn parse_openssh_utc(text: &str) -> Option<u64> {
    let body = text.strip_suffix('Z')?;
    if !body.is_ascii() || !matches!(body.len(), 8 | 12 | 14) {
        return None;
    }
    let field = |from: usize, to: usize| {
        if to <= body.len() {
            digits(&body[from..to])
        } else {
            Some(0)
        }
    };
    unix_seconds(
        field(0, 4)?,
        field(4, 6)?,
        field(6, 8)?,
        field(8, 10)?,
        field(10, 12)?,
        field(12, 14)?,
    )
}

/// A run of ASCII digits as a number (no sign, no spaces).
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Unix seconds of a UTC calendar date and time; `None` if any part is out of range.
fn unix_seconds(
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
) -> Option<u64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date from 1970 on: the inverse of
/// [`civil_from_days`], with the same March-based 400-year eras.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 }; // 0 = March
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `days` days after 1970-01-01.
///
/// Counts in 400-year eras (146 097 days each) starting on 0000-03-01, so leap days
/// fall at the end of each shifted year and need no special case.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_as_rfc_3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn rfc_3339_text_reads_back_to_the_same_instant() {
        for secs in [
            0,
            951_782_399,
            951_782_400,
            1_709_251_199,
            1_735_689_600,
            4_102_444_799,
            4_102_444_800,
            13_569_465_599,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs), "{secs}");
        }
        // Every day of four years, leap days and month ends included.
        for day in 19_000..19_000 + 4 * 366 {
            let secs = day * 86_400 + 45_296;
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs), "day {day}");
        }
    }

    #[test]
    fn other_rfc_3339_text_is_refused() {
        for text in [
            "",
            "2025-01-01T00:00:00",
            "2025-01-01T00:00:00+00:00",
            "2025-01-01 00:00:00Z",
            "2025-01-01T00:00:00.5Z",
            "2025-1-01T00:00:00Z0",
            "2025-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-00-01T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-01-00T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T23:60:00Z",
            "2025-01-01T23:59:60Z",
            "1969-12-31T23:59:59Z",
            "+025-01-01T00:00:00Z",
            "2025-01-01T0a:00:00Z",
            "2025-01-01T00:00:\u{e9}Z",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1));
    }

    #[test]
    fn openssh_utc_timestamps_read_at_three_precisions() {
        assert_eq!(parse_openssh_utc("20250101Z"), Some(1_735_689_600));
        assert_eq!(parse_openssh_utc("202501010001Z"), Some(1_735_689_660));
        assert_eq!(parse_openssh_utc("20250101000102Z"), Some(1_735_689_662));
        assert_eq!(parse_openssh_utc("20000229Z"), Some(951_782_400));
        for text in [
            "20250101",
            "2025010100Z",
            "20250101000Z",
            "202501010000000Z",
            "20250230Z",
            "2025010124Z",
            "20251301Z",
            "2025-01-01Z",
            "202501\u{e9}Z",
            "Z",
            "",
        ] {
            assert_eq!(parse_openssh_utc(text), None, "{text:?}");
        }
    }
}
