//! RFC 3339 timestamps: a strict parser that accepts every valid form (lowercase `t`/`z`, any number of fraction
//! digits, numeric offsets, leap seconds) and a fast formatter, both working on [`time::OffsetDateTime`].

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::error::Rule;

/// Parses an RFC 3339 `date-time` (section 5.6).
///
/// Fractions with more than nine digits are truncated to nanoseconds. A leap second (`23:59:60` in UTC) is
/// represented as `23:59:59.999999999`, since [`OffsetDateTime`] has no 60th second.
///
/// # Errors
/// [`Rule::InvalidTimestamp`], with the reason, when `text` is not a valid RFC 3339 date-time.
pub fn parse(text: &str) -> Result<OffsetDateTime, Rule> {
    parse_date_time(text).map_err(|reason| Rule::InvalidTimestamp { reason })
}

fn parse_date_time(text: &str) -> Result<OffsetDateTime, &'static str> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return Err("too short for a date-time");
    }
    let year = digits(bytes, 0, 4).ok_or("year must be four digits")?;
    expect(bytes, 4, b'-')?;
    let month = digits(bytes, 5, 2).ok_or("month must be two digits")?;
    expect(bytes, 7, b'-')?;
    let day = digits(bytes, 8, 2).ok_or("day must be two digits")?;
    if !matches!(bytes[10], b'T' | b't') {
        return Err("date and time must be separated by 'T'");
    }
    let hour = digits(bytes, 11, 2).ok_or("hour must be two digits")?;
    expect(bytes, 13, b':')?;
    let minute = digits(bytes, 14, 2).ok_or("minute must be two digits")?;
    expect(bytes, 16, b':')?;
    let second = digits(bytes, 17, 2).ok_or("second must be two digits")?;
    let mut index = 19;
    let mut nanosecond = 0u32;
    if bytes[index] == b'.' {
        index += 1;
        let start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            if index - start < 9 {
                nanosecond = nanosecond * 10 + u32::from(bytes[index] - b'0');
            }
            index += 1;
        }
        let count = index - start;
        if count == 0 {
            return Err("fraction of a second needs at least one digit");
        }
        for _ in count..9 {
            nanosecond *= 10;
        }
    }
    let offset_minutes: i32 = match &bytes[index..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let offset_hour = digits(rest, 0, 2).ok_or("offset hour must be two digits")?;
            let offset_minute = digits(rest, 3, 2).ok_or("offset minute must be two digits")?;
            if offset_hour > 23 || offset_minute > 59 {
                return Err("offset out of range");
            }
            let total = i32::from(offset_hour) * 60 + i32::from(offset_minute);
            if *sign == b'-' { -total } else { total }
        }
        [] => return Err("missing time zone offset ('Z' or +hh:mm)"),
        _ => return Err("invalid time zone offset (expected 'Z' or +hh:mm)"),
    };
    let month = u8::try_from(month)
        .ok()
        .and_then(|month| Month::try_from(month).ok())
        .ok_or("month out of range")?;
    let date = Date::from_calendar_date(i32::from(year), month, u8::try_from(day).unwrap_or(0))
        .map_err(|_| "day out of range for the month")?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time of day out of range");
    }
    let leap = second == 60;
    let time = if leap {
        Time::from_hms_nano(hour as u8, minute as u8, 59, 999_999_999)
    } else {
        Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanosecond)
    }
    .map_err(|_| "time of day out of range")?;
    let offset =
        UtcOffset::from_whole_seconds(offset_minutes * 60).map_err(|_| "offset out of range")?;
    let value = PrimitiveDateTime::new(date, time).assume_offset(offset);
    if leap {
        // `checked_`: near year 9999 a negative offset puts the UTC value past what `OffsetDateTime` holds, and
        // the panicking `to_offset` would let untrusted input crash a subscriber.
        let utc = value
            .checked_to_offset(UtcOffset::UTC)
            .ok_or("a leap second can only be 23:59:60 UTC")?;
        if (utc.hour(), utc.minute()) != (23, 59) {
            return Err("a leap second can only be 23:59:60 UTC");
        }
    }
    Ok(value)
}

fn expect(bytes: &[u8], index: usize, wanted: u8) -> Result<(), &'static str> {
    if bytes.get(index) == Some(&wanted) {
        Ok(())
    } else {
        Err(match wanted {
            b'-' => "date fields must be separated by '-'",
            _ => "time fields must be separated by ':'",
        })
    }
}

fn digits(bytes: &[u8], start: usize, count: usize) -> Option<u16> {
    let slice = bytes.get(start..start + count)?;
    slice.iter().try_fold(0u16, |total, &byte| {
        byte.is_ascii_digit()
            .then(|| total * 10 + u16::from(byte - b'0'))
    })
}

/// Longest output of [`write`]: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn+HH:MM`.
pub(crate) const MAX_LEN: usize = 35;

/// Checks that `value` can be written as RFC 3339: year 0 to 9999, offset in whole minutes.
pub(crate) fn check_representable(value: OffsetDateTime) -> Result<(), Rule> {
    let reason = if !(0..=9999).contains(&value.year()) {
        "year must be between 0000 and 9999"
    } else if value.offset().seconds_past_minute() != 0 {
        "offset must be whole minutes"
    } else {
        return Ok(());
    };
    Err(Rule::InvalidTimestamp { reason })
}

/// Writes `value` as RFC 3339 into `buffer` and returns the text: `Z` for UTC, fraction digits only as many as
/// needed. The caller must have checked [`check_representable`].
pub(crate) fn write(value: OffsetDateTime, buffer: &mut [u8; MAX_LEN]) -> &str {
    fn put(buffer: &mut [u8], at: usize, value: u32, width: usize) {
        let mut rest = value;
        for index in (at..at + width).rev() {
            buffer[index] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    }
    let year = value.year().clamp(0, 9999) as u32;
    put(buffer, 0, year, 4);
    buffer[4] = b'-';
    put(buffer, 5, u32::from(u8::from(value.month())), 2);
    buffer[7] = b'-';
    put(buffer, 8, u32::from(value.day()), 2);
    buffer[10] = b'T';
    put(buffer, 11, u32::from(value.hour()), 2);
    buffer[13] = b':';
    put(buffer, 14, u32::from(value.minute()), 2);
    buffer[16] = b':';
    put(buffer, 17, u32::from(value.second()), 2);
    let mut len = 19;
    let nanosecond = value.nanosecond();
    if nanosecond != 0 {
        buffer[len] = b'.';
        put(buffer, len + 1, nanosecond, 9);
        len += 10;
        while buffer[len - 1] == b'0' {
            len -= 1;
        }
    }
    let offset = value.offset();
    if offset.is_utc() {
        buffer[len] = b'Z';
        len += 1;
    } else {
        let total = offset.whole_minutes();
        buffer[len] = if total < 0 { b'-' } else { b'+' };
        let total = u32::from(total.unsigned_abs());
        put(buffer, len + 1, total / 60, 2);
        buffer[len + 3] = b':';
        put(buffer, len + 4, total % 60, 2);
        len += 6;
    }
    // Only ASCII was written.
    std::str::from_utf8(&buffer[..len]).unwrap_or_default()
}

/// Formats `value` as an RFC 3339 string.
///
/// # Errors
/// [`Rule::InvalidTimestamp`] when the year is outside 0000-9999 or the offset has a seconds part, which RFC 3339
/// cannot express.
pub fn format(value: OffsetDateTime) -> Result<String, Rule> {
    check_representable(value)?;
    let mut buffer = [0u8; MAX_LEN];
    Ok(write(value, &mut buffer).to_owned())
}
