//! RFC 1123 / RFC 822 dates, as the manifest's `expires` option takes them.

use std::fmt;

/// A point in time with one-second precision, shown in the RFC 1123 form S3 uses
/// (`Thu, 07 Jan 2010 16:00:00 GMT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HttpDate {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_seconds: i64,
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl HttpDate {
    /// Parses `[Day ","] DD Mon YYYY HH:MM[:SS] zone`. The zone is `GMT`, `UT`, `UTC`, `Z`, a
    /// US zone of RFC 822 (`EST`, `PDT`, ...) or `+hhmm`/`-hhmm`. Names are case-insensitive;
    /// a two-digit year is refused (it would be a guess). A day name, when given, must match
    /// the date.
    ///
    /// # Errors
    ///
    /// A sentence saying which part is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (day_name, rest) = match text.split_once(',') {
            Some((day, rest)) => (Some(day.trim()), rest.trim()),
            None => (None, text),
        };
        let parts: Vec<&str> = rest.split_whitespace().collect();
        let [day, month, year, time, zone] = parts.as_slice() else {
            return Err(format!(
                "`{text}` is not an RFC 1123 date; write it like `Thu, 07 Jan 2010 16:00:00 GMT`"
            ));
        };
        let day: u32 = parse_number(day, "day", 1, 31)?;
        let month = MONTHS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(month))
            .ok_or_else(|| format!("`{month}` is not a month; use Jan, Feb, ... Dec"))?;
        if year.len() != 4 {
            return Err(format!("the year `{year}` must have four digits"));
        }
        let year: i64 = i64::from(parse_number::<u32>(year, "year", 1601, 9999)?);
        let time_parts: Vec<&str> = time.split(':').collect();
        let (hour, minute, second) = match time_parts.as_slice() {
            [h, m] => (
                parse_number::<u32>(h, "hour", 0, 23)?,
                parse_number::<u32>(m, "minute", 0, 59)?,
                0,
            ),
            [h, m, s] => (
                parse_number::<u32>(h, "hour", 0, 23)?,
                parse_number::<u32>(m, "minute", 0, 59)?,
                parse_number::<u32>(s, "second", 0, 60)?,
            ),
            _ => return Err(format!("the time `{time}` must be HH:MM:SS")),
        };
        let offset_minutes = zone_offset(zone)?;
        let month_index = u32::try_from(month).map_err(|_| "month out of range".to_owned())? + 1;
        if day > days_in_month(year, month_index) {
            return Err(format!("{} has no day {day} in {year}", MONTHS[month]));
        }
        let days = days_from_civil(year, month_index, day);
        let seconds = days * 86_400
            + i64::from(hour) * 3600
            + i64::from(minute) * 60
            + i64::from(second.min(59))
            - offset_minutes * 60;
        let date = Self {
            unix_seconds: seconds,
        };
        if let Some(name) = day_name {
            if !date.weekday().eq_ignore_ascii_case(name) {
                return Err(format!(
                    "`{name}` does not match the date, which is a {}",
                    date.weekday()
                ));
            }
        }
        Ok(date)
    }

    fn weekday(self) -> &'static str {
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let index = (self.unix_seconds.div_euclid(86_400) + 3).rem_euclid(7);
        DAYS[usize::try_from(index).unwrap_or(0)]
    }
}

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.unix_seconds.div_euclid(86_400);
        let secs = self.unix_seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
            self.weekday(),
            MONTHS[usize::try_from(month - 1).unwrap_or(0)],
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

fn parse_number<T>(text: &str, what: &str, min: u32, max: u32) -> Result<T, String>
where
    T: From<u32>,
{
    let value: u32 = text
        .parse()
        .ok()
        .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("the {what} `{text}` is not a number"))?;
    if value < min || value > max {
        return Err(format!("the {what} `{text}` is out of range ({min}-{max})"));
    }
    Ok(T::from(value))
}

fn zone_offset(zone: &str) -> Result<i64, String> {
    let upper = zone.to_ascii_uppercase();
    let hours = match upper.as_str() {
        "GMT" | "UT" | "UTC" | "Z" => 0,
        "EST" => -5,
        "EDT" => -4,
        "CST" => -6,
        "CDT" => -5,
        "MST" => -7,
        "MDT" => -6,
        "PST" => -8,
        "PDT" => -7,
        _ => {
            let (sign, digits) = match upper.as_bytes().first() {
                Some(b'+') => (1, &upper[1..]),
                Some(b'-') => (-1, &upper[1..]),
                _ => return Err(format!("`{zone}` is not a time zone; use GMT")),
            };
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("the zone `{zone}` must be +hhmm or -hhmm"));
            }
            let h: i64 = digits[..2].parse().map_err(|_| "bad zone".to_owned())?;
            let m: i64 = digits[2..].parse().map_err(|_| "bad zone".to_owned())?;
            if h > 23 || m > 59 {
                return Err(format!("the zone `{zone}` is out of range"));
            }
            return Ok(sign * (h * 60 + m));
        }
    };
    Ok(hours * 60)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> HttpDate {
        HttpDate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn guide_examples() {
        let d = ok("Thu, 07 Jan 2010 16:00:00 GMT");
        assert_eq!(d.unix_seconds, 1_262_880_000);
        assert_eq!(d.to_string(), "Thu, 07 Jan 2010 16:00:00 GMT");
        // The option reference's own example, with a space before the comma and zone UT.
        let d = ok("Mon , 12 Apr 2010 23:20:00 UT");
        assert_eq!(d.to_string(), "Mon, 12 Apr 2010 23:20:00 GMT");
        assert_eq!(
            ok("Wed, 23 Feb 2011 01:55:59 GMT").to_string(),
            "Wed, 23 Feb 2011 01:55:59 GMT"
        );
    }

    #[test]
    fn zones_and_no_day_name() {
        assert_eq!(
            ok("07 Jan 2010 11:00 EST"),
            ok("Thu, 07 Jan 2010 16:00:00 GMT")
        );
        assert_eq!(
            ok("07 jan 2010 17:30:00 +0130"),
            ok("07 Jan 2010 16:00:00 GMT")
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        for (text, needle) in [
            ("Fri, 07 Jan 2010 16:00:00 GMT", "a Thu"),
            ("07 Jan 10 16:00:00 GMT", "four digits"),
            ("30 Feb 2012 16:00:00 GMT", "no day 30"),
            ("07 Jam 2010 16:00:00 GMT", "not a month"),
            ("07 Jan 2010 24:00:00 GMT", "hour"),
            ("07 Jan 2010 16:00:00 CET", "not a time zone"),
            ("2010-01-07T16:00:00Z", "not an RFC 1123 date"),
        ] {
            let e = HttpDate::parse(text).err().unwrap_or_default();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 59, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            let m = u32::try_from(m).unwrap_or(0);
            let d = u32::try_from(d).unwrap_or(0);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
