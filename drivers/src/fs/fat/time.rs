//! DOS date/time fields (FAT and exFAT) as [`Timestamp`]s.
//!
//! FAT stores local time with no zone and a 2-second resolution. exFAT uses the same packed
//! 32-bit layout, adds a 10 ms increment (0..=199) and a UTC-offset byte whose top bit says
//! whether the offset is valid. An impossible date or time gives `None`, never an error: a bad
//! timestamp must not make a file unreadable.

use crate::fs::{Timestamp, Zone};

/// Days from 1970-01-01 to `year-month-day` in the proleptic Gregorian calendar (the usual
/// era-based civil-date formula; every input here is small, so `i64` cannot overflow).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (y, m) = if month <= 2 {
        (year.saturating_sub(1), i64::from(month).saturating_add(9))
    } else {
        (year, i64::from(month).saturating_sub(3))
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153i64.saturating_mul(m).saturating_add(2) / 5).saturating_add(i64::from(day) - 1);
    let doe = yoe
        .saturating_mul(365)
        .saturating_add(yoe / 4)
        .saturating_sub(yoe / 100)
        .saturating_add(doy);
    era.saturating_mul(146_097)
        .saturating_add(doe)
        .saturating_sub(719_468)
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

/// Seconds since 1970 of the local time in a DOS `date` and `time` word, or `None` when the
/// fields do not form a real date and time (a zero date means "not set").
pub(super) fn dos_seconds(date: u16, time: u16) -> Option<i64> {
    if date == 0 {
        return None;
    }
    let day = u32::from(date & 0x1F);
    let month = u32::from((date >> 5) & 0x0F);
    let year = 1980i64.saturating_add(i64::from(date >> 9));
    let seconds = i64::from(time & 0x1F).saturating_mul(2);
    let minutes = i64::from((time >> 5) & 0x3F);
    let hours = i64::from(time >> 11);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hours > 23
        || minutes > 59
        || seconds > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(
        days.saturating_mul(86_400)
            .saturating_add(hours.saturating_mul(3600))
            .saturating_add(minutes.saturating_mul(60))
            .saturating_add(seconds),
    )
}

/// A FAT modification time: local, zone unknown, 2-second resolution.
pub(super) fn fat_mtime(date: u16, time: u16) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: dos_seconds(date, time)?,
        nanos: 0,
        zone: Zone::Unknown,
    })
}

/// An exFAT timestamp: the packed `stamp` (time in the low word, date in the high word), the
/// 10 ms increment (0..=199, ignored when larger) and the UTC-offset byte.
pub(super) fn exfat_time(stamp: u32, ten_ms: u8, utc_offset: u8) -> Option<Timestamp> {
    let date = u16::try_from(stamp >> 16).ok()?;
    let time = u16::try_from(stamp & 0xFFFF).ok()?;
    let mut seconds = dos_seconds(date, time)?;
    let mut nanos = 0u32;
    if ten_ms <= 199 {
        seconds = seconds.saturating_add(i64::from(ten_ms / 100));
        nanos = u32::from(ten_ms % 100).saturating_mul(10_000_000);
    }
    // Bit 7: the offset is valid. Bits 0..=6: a signed count of 15-minute steps east of UTC.
    let zone = if utc_offset & 0x80 != 0 {
        let steps = i64::from(((utc_offset << 1) as i8) >> 1);
        seconds = seconds.saturating_sub(steps.saturating_mul(15 * 60));
        Zone::Utc
    } else {
        Zone::Unknown
    };
    Some(Timestamp {
        seconds,
        nanos,
        zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: u16, m: u16, d: u16) -> u16 {
        ((y - 1980) << 9) | (m << 5) | d
    }
    fn time(h: u16, m: u16, s: u16) -> u16 {
        (h << 11) | (m << 5) | (s / 2)
    }

    #[test]
    fn dos_dates_decode_as_local_seconds() {
        // 2001-09-09T01:46:40 is 1,000,000,000 s after the epoch.
        assert_eq!(
            dos_seconds(date(2001, 9, 9), time(1, 46, 40)),
            Some(1_000_000_000)
        );
        assert_eq!(dos_seconds(date(1980, 1, 1), 0), Some(315_532_800));
        // 2107-12-31T23:59:58, the last FAT time.
        assert_eq!(
            dos_seconds(date(2107, 12, 31), time(23, 59, 58)),
            Some(4_354_819_198)
        );
        assert_eq!(dos_seconds(date(2024, 2, 29), 0), Some(1_709_164_800));
        let t = fat_mtime(date(2001, 9, 9), time(1, 46, 40));
        assert_eq!(t.map(|t| t.zone), Some(Zone::Unknown));
    }

    #[test]
    fn impossible_dates_are_none() {
        assert_eq!(dos_seconds(0, 0), None);
        assert_eq!(dos_seconds(date(2023, 2, 29), 0), None);
        assert_eq!(dos_seconds(date(2023, 13, 1), 0), None);
        assert_eq!(dos_seconds(date(2023, 1, 0), 0), None);
        assert_eq!(dos_seconds(date(2023, 1, 1), 24 << 11), None);
        assert_eq!(dos_seconds(date(2023, 1, 1), 60 << 5), None);
        assert_eq!(dos_seconds(date(2023, 1, 1), 30), None);
    }

    #[test]
    fn exfat_offsets_and_ten_ms() {
        let stamp = (u32::from(date(2001, 9, 9)) << 16) | u32::from(time(1, 46, 40));
        // +02:00 (8 steps of 15 minutes), 1.23 s past the even second.
        let t = exfat_time(stamp, 123, 0x80 | 8);
        assert_eq!(
            t,
            Some(Timestamp {
                seconds: 1_000_000_000 + 1 - 7200,
                nanos: 230_000_000,
                zone: Zone::Utc
            })
        );
        // -05:00 is -20 steps: 0x80 | (0x80 - 20) in 7-bit two's complement.
        let t = exfat_time(stamp, 0, 0x80 | (0x80 - 20));
        assert_eq!(t.map(|t| t.seconds), Some(1_000_000_000 + 5 * 3600));
        // No valid offset: local time, zone unknown; a bad increment is ignored.
        let t = exfat_time(stamp, 250, 8);
        assert_eq!(
            t,
            Some(Timestamp {
                seconds: 1_000_000_000,
                nanos: 0,
                zone: Zone::Unknown
            })
        );
    }
}
