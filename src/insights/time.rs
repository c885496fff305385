//! Dates without a date library: civil dates to and from Unix time (UTC),
//! after Howard Hinnant's `days_from_civil` / `civil_from_days`.

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Whether a time as written is a bare date (`YYYY-MM-DD` or `YYYYMMDD`).
pub fn is_date_only(s: &str) -> bool {
    let s = s.trim();
    (s.len() == 10 && s.as_bytes().get(4) == Some(&b'-'))
        || (s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// The end of a `--until` range: a bare date includes that whole day.
pub fn parse_until(s: &str) -> Result<u64, String> {
    let t = parse_time(s)?;
    Ok(if is_date_only(s) { t + 86_400_000 } else { t })
}

/// `YYYY-MM-DD` of a time in ms since the epoch (UTC).
pub fn day(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The Monday of the ISO week of a time, `YYYY-MM-DD`.
pub fn week(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    // 1970-01-01 was a Thursday: Monday is 3 days before.
    let monday = days - (days + 3).rem_euclid(7);
    let (y, m, d) = civil_from_days(monday);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day(ms),
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

fn num(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not a {what}"));
    }
    s.parse().map_err(|_| format!("'{s}' is not a {what}"))
}

/// A time as ms since the epoch: `YYYY-MM-DD`, `YYYYMMDD`, or either with
/// `THH:MM[:SS[.fff]]` (or a space) and an optional `Z` or `±HH:MM`
/// offset (UTC when none); or Unix seconds.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let err = |m: String| {
        format!("time '{s}': {m} (expected e.g. 2026-11-30, 2026-11-30T14:05:00Z or Unix seconds)")
    };
    if !s.is_ascii() {
        return Err(err("not a time".into()));
    }
    if s.len() >= 9 && s.bytes().all(|b| b.is_ascii_digit()) && s.len() != 8 {
        return s
            .parse::<u64>()
            .ok()
            .filter(|v| *v < 253_402_300_800) // before year 10000
            .map(|v| v * 1000)
            .ok_or_else(|| err("Unix seconds out of range".into()));
    }
    let (date, rest) = match s.find(['T', ' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let (y, m, d) = if date.len() == 8 && !date.contains('-') {
        (
            num(&date[..4], "year").map_err(err)?,
            num(&date[4..6], "month").map_err(err)?,
            num(&date[6..], "day").map_err(err)?,
        )
    } else {
        let p: Vec<&str> = date.split('-').collect();
        if p.len() != 3 {
            return Err(err("no date".into()));
        }
        (
            num(p[0], "year").map_err(err)?,
            num(p[1], "month").map_err(err)?,
            num(p[2], "day").map_err(err)?,
        )
    };
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(err("date out of range".into()));
    }
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0i64)
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|i| *i >= 5) {
        let (c, o) = (&rest[..i], &rest[i..]);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let hm: Vec<&str> = o[1..].split(':').collect();
        let h = num(hm[0], "offset").map_err(err)? as i64;
        let mi = hm
            .get(1)
            .map(|x| num(x, "offset"))
            .transpose()
            .map_err(err)?
            .unwrap_or(0) as i64;
        (c, sign * (h * 60 + mi))
    } else {
        (rest, 0)
    };
    let mut secs = 0i64;
    if !clock.is_empty() {
        let p: Vec<&str> = clock.split(':').collect();
        if p.len() < 2 || p.len() > 3 {
            return Err(err("the time of day is HH:MM or HH:MM:SS".into()));
        }
        let h = num(p[0], "hour").map_err(err)?;
        let mi = num(p[1], "minute").map_err(err)?;
        let sec = p
            .get(2)
            .map(|x| num(x.split('.').next().unwrap_or(""), "second"))
            .transpose()
            .map_err(err)?
            .unwrap_or(0);
        if h > 23 || mi > 59 || sec > 60 {
            return Err(err("time of day out of range".into()));
        }
        secs = (h * 3600 + mi * 60 + sec) as i64;
    }
    let t = days_from_civil(y as i64, m, d) * 86_400 + secs - offset_min * 60;
    if t < 0 {
        return Err(err("before 1970".into()));
    }
    Ok(t as u64 * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_parse() {
        for (s, ms) in [
            ("1970-01-01", 0u64),
            ("2026-11-30", 1_795_996_800_000),
            ("2026-11-30T14:05:09Z", 1_796_047_509_000),
            ("2026-11-30 15:05:09+01:00", 1_796_047_509_000),
            ("20261130", 1_795_996_800_000),
            ("1796047509", 1_796_047_509_000),
        ] {
            assert_eq!(parse_time(s).unwrap(), ms, "{s}");
        }
        assert_eq!(iso(1_796_047_509_000), "2026-11-30T14:05:09Z");
        assert_eq!(day(1_796_047_509_000), "2026-11-30");
        assert_eq!(week(1_796_047_509_000), "2026-11-30"); // a Monday
        assert_eq!(week(parse_time("2026-12-06").unwrap()), "2026-11-30");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(
            parse_until("2026-11-30").unwrap(),
            parse_time("2026-12-01").unwrap()
        );
        assert_eq!(
            parse_until("20261130").unwrap(),
            parse_time("2026-12-01").unwrap()
        );
        assert_eq!(parse_until("1796047509").unwrap(), 1_796_047_509_000);
        for bad in [
            "2026-13-01",
            "yesterday",
            "2026-11-30T25:00",
            "2026-11",
            "222é113",
            "99999999999999999",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
