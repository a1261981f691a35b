//! Timestamps: stored as milliseconds since the Unix epoch (cheap to compare in SQL on
//! both backends) and rendered as RFC 3339 in UTC on the wire.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        // Millisecond precision so that what is stored and what is returned agree.
        Self::from_millis(Utc::now().timestamp_millis())
    }

    pub fn from_millis(ms: i64) -> Self {
        Self(Utc.timestamp_millis_opt(ms).single().unwrap_or(DateTime::<Utc>::MIN_UTC))
    }

    pub fn millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    pub fn plus_secs(&self, secs: i64) -> Self {
        Self::from_millis(self.millis().saturating_add(secs.saturating_mul(1000)))
    }

    /// Parses an RFC 3339 date-time (the JSON Schema `date-time` format).
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| Self::from_millis(t.with_timezone(&Utc).timestamp_millis()))
            .map_err(|e| format!("must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z ({e})"))
    }

    pub fn to_rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// Always three fraction digits: a fixed form, for what is hashed (the audit chain).
    pub fn to_rfc3339_millis(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Deserializes an optional count (seconds, messages) given as any JSON number with no
/// fraction (`60` or `60.0`: JSON Schema's `integer` admits both), refusing fractions
/// and negatives.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::Deserialize;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 1e15 => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!("{n} is not a whole, non-negative number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_offsets_normalised_to_utc() {
        let t = Timestamp::parse_rfc3339("2030-01-01T02:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2030-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_millis(t.millis()), t);
    }

    #[test]
    fn rejects_non_rfc3339() {
        assert!(Timestamp::parse_rfc3339("tomorrow").is_err());
        assert!(Timestamp::parse_rfc3339("2030-01-01").is_err());
    }
}
