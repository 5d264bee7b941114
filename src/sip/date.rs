//! RFC 1123 dates (`Thu, 26 Nov 2026 09:17:12 GMT`) from Unix seconds, by arithmetic.
//!
//! A registrar's 200 OK carries a `Date` header (RFC 3261 §10.3 step 8, §20.17) so that
//! simple user agents can set their clocks. The time is an input (the sans-IO core reads
//! no clock), and formatting it needs neither a time library nor an allocation.

/// Length of an RFC 1123 date: `Thu, 26 Nov 2026 09:17:12 GMT`.
pub const DATE_BYTES: usize = 29;

/// Latest representable instant (9999-12-31 23:59:59 UTC): later inputs are clamped so the
/// year keeps four digits.
const UNIX_S_MAX: u64 = 253_402_300_799;

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Converts days since 1970-01-01 to `(year, month 1..=12, day 1..=31)`
/// (H. Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn two(out: &mut [u8], at: usize, v: u64) {
    if let Some(s) = out.get_mut(at..at + 2) {
        s.copy_from_slice(&[b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]);
    }
}

/// Writes the RFC 1123 date of `unix_s` (clamped to year 9999) into `out`.
pub fn write_date(unix_s: u64, out: &mut [u8; DATE_BYTES]) {
    let s = unix_s.min(UNIX_S_MAX);
    let days = s / 86_400;
    let secs = s % 86_400;
    let (year, month, day) = civil_from_days(days);
    *out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday: index 4 in a week starting on Sunday.
    let weekday = WEEKDAYS
        .get(((days + 4) % 7) as usize)
        .copied()
        .unwrap_or(b"Thu");
    out[..3].copy_from_slice(weekday);
    two(out, 5, day);
    let month = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or(b"Jan");
    out[8..11].copy_from_slice(month);
    two(out, 12, year / 100);
    two(out, 14, year % 100);
    two(out, 17, secs / 3_600);
    two(out, 20, secs / 60 % 60);
    two(out, 23, secs % 60);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: u64) -> String {
        let mut out = [0; DATE_BYTES];
        write_date(s, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT"); // RFC 7231 example
        assert_eq!(date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(date(1_795_684_632), "Thu, 26 Nov 2026 09:17:12 GMT");
        assert_eq!(date(4_133_980_799), "Fri, 31 Dec 2100 23:59:59 GMT");
        assert_eq!(date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
