//! `expires` values, formatted exactly as Go's `time.Time` JSON layout
//! (`2006-01-02T15:04:05.999999999Z07:00`), and the clock trait that injects "now".

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// An instant with the UTC offset it was written in, so files round-trip byte for byte.
///
/// Equality and ordering compare the instant only.
#[derive(Clone, Copy, Debug)]
pub struct DateTime {
    unix_nanos: i128,
    offset_secs: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {input:?}: {reason}")]
pub struct TimeError {
    pub input: String,
    pub reason: &'static str,
}

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z: Go's JSON encoder refuses
/// years outside 0..=9999.
const MIN_UNIX_SECS: i128 = -62_167_219_200;
const MAX_UNIX_SECS: i128 = 253_402_300_799;

impl DateTime {
    pub fn from_unix_nanos(unix_nanos: i128) -> Self {
        DateTime {
            unix_nanos,
            offset_secs: 0,
        }
    }

    pub fn from_unix_secs(secs: i64) -> Self {
        Self::from_unix_nanos(secs as i128 * NANOS_PER_SEC)
    }

    pub fn unix_nanos(&self) -> i128 {
        self.unix_nanos
    }

    pub fn unix_secs(&self) -> i64 {
        self.unix_nanos.div_euclid(NANOS_PER_SEC) as i64
    }

    /// The same instant expressed in UTC (how notarium writes every time it produces).
    pub fn to_utc(self) -> Self {
        Self::from_unix_nanos(self.unix_nanos)
    }

    pub fn plus_secs(self, secs: i64) -> Self {
        DateTime {
            unix_nanos: self.unix_nanos + secs as i128 * NANOS_PER_SEC,
            offset_secs: self.offset_secs,
        }
    }

    pub fn plus_days(self, days: i64) -> Self {
        self.plus_secs(days * 86_400)
    }

    /// Seconds from `self` until `later` (negative when `later` is earlier).
    pub fn secs_until(&self, later: &DateTime) -> i64 {
        ((later.unix_nanos - self.unix_nanos) / NANOS_PER_SEC) as i64
    }

    pub fn parse(input: &str) -> Result<Self, TimeError> {
        let err = |reason| TimeError {
            input: input.chars().take(64).collect(),
            reason,
        };
        // Go's layout requires an upper-case 'T' and a 'Z' or ±hh:mm zone.
        if input.len() < 20 || input.as_bytes().get(10) != Some(&b'T') {
            return Err(err("not an RFC 3339 date-time"));
        }
        let t =
            OffsetDateTime::parse(input, &Rfc3339).map_err(|_| err("not an RFC 3339 date-time"))?;
        let off = t.offset().whole_seconds();
        if off % 60 != 0 {
            return Err(err("UTC offset with seconds"));
        }
        let dt = DateTime {
            unix_nanos: t.unix_timestamp_nanos(),
            offset_secs: off,
        };
        dt.check_range()
            .map_err(|_| err("year outside 0000-9999"))?;
        Ok(dt)
    }

    fn check_range(&self) -> Result<(), ()> {
        let local = self.unix_nanos.div_euclid(NANOS_PER_SEC) + self.offset_secs as i128;
        if (MIN_UNIX_SECS..=MAX_UNIX_SECS).contains(&local) {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Go's `time.RFC3339Nano` text. `None` when the year is outside 0000-9999.
    pub fn format(&self) -> Option<String> {
        self.check_range().ok()?;
        let offset = UtcOffset::from_whole_seconds(self.offset_secs).ok()?;
        let t = OffsetDateTime::from_unix_timestamp_nanos(self.unix_nanos)
            .ok()?
            .to_offset(offset);
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let nanos = t.nanosecond();
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        if self.offset_secs == 0 {
            s.push('Z');
        } else {
            let sign = if self.offset_secs < 0 { '-' } else { '+' };
            let m = self.offset_secs.unsigned_abs() / 60;
            s.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
        }
        Some(s)
    }
}

impl PartialEq for DateTime {
    fn eq(&self, other: &Self) -> bool {
        self.unix_nanos == other.unix_nanos
    }
}
impl Eq for DateTime {}
impl PartialOrd for DateTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for DateTime {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.unix_nanos.cmp(&other.unix_nanos)
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.format() {
            Some(s) => f.write_str(&s),
            None => write!(f, "<out of range: {} ns>", self.unix_nanos),
        }
    }
}

impl<'de> serde::Deserialize<'de> for DateTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for DateTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.format() {
            Some(v) => s.serialize_str(&v),
            None => Err(serde::ser::Error::custom("year outside 0000-9999")),
        }
    }
}

/// Where "now" comes from. Verification never reads the system clock directly, so expiry
/// is testable without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        DateTime::from_unix_nanos(d.as_nanos() as i128)
    }
}

/// A clock that says what it is told (tests, replays).
#[derive(Debug)]
pub struct FixedClock(std::sync::Mutex<DateTime>);

impl FixedClock {
    pub fn new(at: DateTime) -> Self {
        FixedClock(std::sync::Mutex::new(at))
    }
    pub fn set(&self, at: DateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
    pub fn advance_secs(&self, secs: i64) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.plus_secs(secs);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> String {
        DateTime::parse(s).unwrap().format().unwrap()
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(
            rt("2036-11-22T01:27:14.806979879Z"),
            "2036-11-22T01:27:14.806979879Z"
        );
        assert_eq!(
            rt("2029-11-24T01:47:08.6440161Z"),
            "2029-11-24T01:47:08.6440161Z"
        );
        assert_eq!(
            rt("2116-07-03T17:56:36.027379879-05:00"),
            "2116-07-03T17:56:36.027379879-05:00"
        );
        assert_eq!(rt("2020-01-01T00:00:00.500Z"), "2020-01-01T00:00:00.5Z");
        assert_eq!(rt("2020-01-01T00:00:00.000Z"), "2020-01-01T00:00:00Z");
        assert_eq!(rt("2020-01-01T05:30:00+05:30"), "2020-01-01T05:30:00+05:30");
        assert_eq!(rt("2020-01-01T00:00:00+00:00"), "2020-01-01T00:00:00Z");
    }

    #[test]
    fn compares_instants_not_text() {
        let a = DateTime::parse("2020-01-01T05:00:00+05:00").unwrap();
        let b = DateTime::parse("2020-01-01T00:00:00Z").unwrap();
        assert_eq!(a, b);
        assert!(DateTime::parse("2020-01-01T00:00:01Z").unwrap() > b);
    }

    #[test]
    fn refuses_bad_times() {
        for bad in [
            "",
            "2020-01-01",
            "2020-01-01 00:00:00Z",
            "2020-13-01T00:00:00Z",
            "2020-01-01T00:00:00",
            "x2020-01-01T00:00:00Z",
        ] {
            assert!(DateTime::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            DateTime::from_unix_secs(MAX_UNIX_SECS as i64 + 1).format(),
            None
        );
    }
}
