//! When a periodic task fires: a cron spec (5 fields, or 6 with seconds
//! first; `@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`,
//! `@yearly`), or `@every <duration>`, in a time zone.
//!
//! Ticks are instants every scheduler computes alike, so any number of
//! them agree on which tick is due: a cron spec's occurrences in its zone,
//! and for `@every d` the multiples of `d` since the Unix epoch (`@every
//! 30s` fires at :00 and :30 of each minute; Asynq counts from its
//! scheduler's start instead, which differs from process to process).
//! Cron fields are parsed by the `croner` crate with robfig/cron's
//! leniencies (Asynq's parser): `N/step` steps and `?` as `*`.
//!
//! ```
//! use wasq::cron::Schedule;
//! let every = Schedule::parse("@every 30s", None).unwrap();
//! let t = jiff::Timestamp::from_second(1_800_000_015).unwrap();
//! assert_eq!(every.latest_at_or_before(t).unwrap().as_second(), 1_800_000_000);
//! assert_eq!(every.next_after(t).unwrap().as_second(), 1_800_000_030);
//!
//! let daily = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
//! let next = daily.next_after("2026-12-01T12:00:00Z".parse().unwrap()).unwrap();
//! assert_eq!(next.to_string(), "2026-12-02T02:00:00Z");
//! assert!(Schedule::parse("61 * * * *", None).is_err());
//! ```

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed spec and its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    kind: Kind,
    zone: TimeZone,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<Cron>),
    /// Whole seconds, at least one.
    Every(i64),
}

impl Schedule {
    /// Parses `spec` in time zone `zone` (an IANA name; UTC when `None`). A
    /// `TZ=<zone> ` or `CRON_TZ=<zone> ` prefix in the spec, as robfig/cron
    /// accepts, overrides `zone`.
    pub fn parse(spec: &str, zone: Option<&str>) -> Result<Self, String> {
        let text = spec.trim();
        let (zone_name, rest) = match text.split_once(char::is_whitespace) {
            Some((head, rest)) if head.starts_with("TZ=") || head.starts_with("CRON_TZ=") => (
                Some(head.split_once('=').map_or("", |(_, z)| z)),
                rest.trim(),
            ),
            _ => (zone, text),
        };
        let zone = match zone_name {
            None | Some("UTC") => TimeZone::UTC,
            Some(name) => TimeZone::get(name)
                .map_err(|e| format!("{name:?} is not a known time zone ({e})"))?,
        };
        let kind = if let Some(every) = rest.strip_prefix("@every") {
            let every = every.trim();
            let duration = humantime::parse_duration(every).map_err(|e| {
                format!("\"@every {every}\": {e}; write e.g. \"@every 30s\" or \"@every 1h30m\"")
            })?;
            if duration < Duration::from_secs(1) || duration.subsec_nanos() != 0 {
                return Err(format!(
                    "\"@every {every}\": the interval must be whole seconds, at least 1s"
                ));
            }
            Kind::Every(i64::try_from(duration.as_secs()).map_err(|_| "interval too long")?)
        } else {
            let fields = if rest.eq_ignore_ascii_case("@midnight") {
                "@daily"
            } else {
                rest
            };
            let count = fields.split_whitespace().count();
            if !fields.starts_with('@') && !(5..=6).contains(&count) {
                return Err(format!(
                    "{rest:?} has {count} fields; a cron spec has 5 (minute hour day month \
                     weekday) or 6 (seconds first), or is @every <duration>, @hourly, @daily, \
                     @weekly, @monthly or @yearly"
                ));
            }
            let cron = CronParser::builder()
                .seconds(Seconds::Optional)
                .year(Year::Disallowed)
                .sloppy_ranges(true)
                .build()
                .parse(&fields.replace('?', "*"))
                .map_err(|e| format!("{rest:?} is not a cron spec: {e}"))?;
            Kind::Cron(Box::new(cron))
        };
        Ok(Self {
            text: text.to_owned(),
            kind,
            zone,
        })
    }

    /// The spec as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The time zone's name.
    pub fn zone(&self) -> &str {
        self.zone.iana_name().unwrap_or("UTC")
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(every) => {
                let s = t.as_second().div_euclid(*every) * every + every;
                Timestamp::from_second(s).ok()
            }
            Kind::Cron(cron) => cron
                .find_next_occurrence(&t.to_zoned(self.zone.clone()), false)
                .ok()
                .map(|z| z.timestamp()),
        }
    }

    /// The last tick at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(every) => {
                let s = t.as_second().div_euclid(*every) * every;
                Timestamp::from_second(s).ok()
            }
            Kind::Cron(cron) => {
                // Ticks are whole seconds: a tick at t's second counts.
                let second = Timestamp::from_second(t.as_second()).ok()?;
                cron.find_previous_occurrence(&second.to_zoned(self.zone.clone()), true)
                    .ok()
                    .map(|z| z.timestamp())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn five_and_six_fields_and_nicknames() {
        let minute = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            minute.next_after(at("2026-12-01T10:07:30Z")),
            Some(at("2026-12-01T10:15:00Z"))
        );
        assert_eq!(
            minute.latest_at_or_before(at("2026-12-01T10:15:00.5Z")),
            Some(at("2026-12-01T10:15:00Z"))
        );
        let seconds = Schedule::parse("*/10 * * * * *", None).unwrap();
        assert_eq!(
            seconds.next_after(at("2026-12-01T10:07:31Z")),
            Some(at("2026-12-01T10:07:40Z"))
        );
        let midnight = Schedule::parse("@midnight", None).unwrap();
        assert_eq!(
            midnight.next_after(at("2026-12-01T10:00:00Z")),
            Some(at("2026-12-02T00:00:00Z"))
        );
        let steps = Schedule::parse("5/20 * * * *", None).unwrap();
        assert_eq!(
            steps.next_after(at("2026-12-01T10:06:00Z")),
            Some(at("2026-12-01T10:25:00Z"))
        );
    }

    #[test]
    fn zones_from_the_key_or_the_prefix() {
        let key = Schedule::parse("30 9 * * *", Some("America/New_York")).unwrap();
        let prefix = Schedule::parse("TZ=America/New_York 30 9 * * *", None).unwrap();
        for schedule in [key, prefix] {
            assert_eq!(schedule.zone(), "America/New_York");
            assert_eq!(
                schedule.next_after(at("2026-12-01T00:00:00Z")),
                Some(at("2026-12-01T14:30:00Z"))
            );
        }
    }

    #[test]
    fn every_counts_from_the_epoch() {
        let every = Schedule::parse("@every 1m30s", None).unwrap();
        let t = at("2026-12-01T10:00:10Z");
        let last = every.latest_at_or_before(t).unwrap();
        assert_eq!(last.as_second() % 90, 0);
        assert_eq!(
            every.next_after(last).unwrap().as_second() - last.as_second(),
            90
        );
        assert_eq!(
            every.next_after(t).unwrap().as_second() - last.as_second(),
            90
        );
    }

    #[test]
    fn bad_specs_say_why() {
        for (spec, why) in [
            ("* * * *", "4 fields"),
            ("61 * * * *", "not a cron spec"),
            ("@every 500ms", "whole seconds"),
            ("@every soon", "@every 30s"),
            ("TZ=Mars/Olympus 0 * * * *", "time zone"),
        ] {
            let error = Schedule::parse(spec, None).unwrap_err();
            assert!(error.contains(why), "{spec}: {error}");
        }
    }
}
