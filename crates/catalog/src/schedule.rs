//! Schedules' cron expressions (Quartz form, seed 003: `0 0 1 * * ?` = every day at 01:00:00
//! UTC). A schedule may fire at most once a day, so the accepted form is a fixed second,
//! minute and hour with every day of every month: `S M H * * ?` (or `*` for the last field).

use chrono::{DateTime, Duration, NaiveTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("a schedule is `seconds minutes hours day-of-month month day-of-week` (six fields, e.g. `0 0 1 * * ?`); got {0} fields")]
    Fields(usize),
    #[error("{field} must be a number from 0 to {max} (a schedule runs at one fixed time a day), not {value:?}")]
    Time {
        field: &'static str,
        max: u32,
        value: String,
    },
    #[error("a schedule runs every day: day-of-month and month must be `*`, day-of-week `?` or `*` (got {0:?})")]
    NotDaily(String),
}

/// The time of day a daily schedule fires (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Daily(NaiveTime);

impl Daily {
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(CronError::Fields(fields.len()));
        }
        let number = |i: usize, field: &'static str, max: u32| -> Result<u32, CronError> {
            fields[i]
                .parse::<u32>()
                .ok()
                .filter(|v| *v <= max)
                .ok_or_else(|| CronError::Time {
                    field,
                    max,
                    value: fields[i].to_string(),
                })
        };
        let (s, m, h) = (
            number(0, "seconds", 59)?,
            number(1, "minutes", 59)?,
            number(2, "hours", 23)?,
        );
        if fields[3] != "*" && fields[3] != "?"
            || fields[4] != "*"
            || fields[5] != "?" && fields[5] != "*"
        {
            return Err(CronError::NotDaily(fields[3..].join(" ")));
        }
        NaiveTime::from_hms_opt(h, m, s)
            .map(Daily)
            .ok_or(CronError::NotDaily(expr.to_string()))
    }

    /// The latest firing at or before `now`.
    pub fn last_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now.date_naive().and_time(self.0).and_utc();
        if today <= now {
            today
        } else {
            today - Duration::days(1)
        }
    }

    /// The next firing after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.last_before(now) + Duration::days(1)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_seed_schedule_fires_daily_at_one() {
        let d = Daily::parse("0 0 1 * * ?").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 0, 30, 0).unwrap();
        assert_eq!(
            d.last_before(now),
            Utc.with_ymd_and_hms(2026, 11, 27, 1, 0, 0).unwrap()
        );
        assert_eq!(
            d.next_after(now),
            Utc.with_ymd_and_hms(2026, 11, 28, 1, 0, 0).unwrap()
        );
        let later = Utc.with_ymd_and_hms(2026, 11, 28, 1, 0, 0).unwrap();
        assert_eq!(d.last_before(later), later);
    }

    #[test]
    fn more_than_once_a_day_or_not_daily_is_refused() {
        assert!(matches!(
            Daily::parse("0 */5 * * * ?"),
            Err(CronError::Time {
                field: "minutes",
                ..
            })
        ));
        assert!(matches!(
            Daily::parse("0 0 1 1 * ?"),
            Err(CronError::NotDaily(_))
        ));
        assert!(matches!(
            Daily::parse("0 0 1 * *"),
            Err(CronError::Fields(5))
        ));
        assert!(Daily::parse("30 15 23 ? * *").is_ok());
    }
}
