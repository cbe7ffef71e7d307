//! UTC calendar dates from Unix seconds: the access log's timestamps and the day and month windows of
//! end-user quotas (`docs/budgets.md`). Proleptic Gregorian, no time zones, no leap seconds (Unix time
//! has none).

/// Seconds in a UTC day.
pub const DAY: u64 = 86_400;

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A proleptic Gregorian date to days since 1970-01-01 (the inverse of [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC date of `unix` seconds as `YYYY-MM-DD`.
pub fn day_label(unix: u64) -> String {
    let (y, m, d) = civil_from_days((unix / DAY) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC month of `unix` seconds as `YYYY-MM`.
pub fn month_label(unix: u64) -> String {
    let (y, m, _) = civil_from_days((unix / DAY) as i64);
    format!("{y:04}-{m:02}")
}

/// The first second of the UTC day after the one holding `unix`.
pub fn next_day(unix: u64) -> u64 {
    (unix / DAY + 1) * DAY
}

/// The first second of the UTC month after the one holding `unix`.
pub fn next_month(unix: u64) -> u64 {
    let (y, m, _) = civil_from_days((unix / DAY) as i64);
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) as u64 * DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        for z in [-1_000_000i64, -1, 0, 59, 11_016, 20_454, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn windows() {
        // 2026-12-07T01:39:51Z
        let t = 1_796_607_591;
        assert_eq!(day_label(t), "2026-12-07");
        assert_eq!(month_label(t), "2026-12");
        assert_eq!(day_label(next_day(t)), "2026-12-08");
        assert_eq!(next_day(t) % DAY, 0);
        assert_eq!(day_label(next_month(t)), "2027-01-01");
        assert_eq!(day_label(next_month(next_month(t))), "2027-02-01");
        // The last second of a day is still that day.
        assert_eq!(day_label(next_day(t) - 1), "2026-12-07");
        // Leap February.
        let feb = days_from_civil(2028, 2, 10) as u64 * DAY;
        assert_eq!(day_label(next_month(feb) - 1), "2028-02-29");
    }
}
