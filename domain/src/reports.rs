//! SWR's usage reports (`GET /v2/manage/reports/<store|downflow>/<frequency>`):
//! a series of `{date, value}` per day, week or month, built from daily
//! figures — bytes served per day (summed over a period) and bytes stored
//! as last seen on a day (the period's last value).

/// Days a series covers, per frequency.
pub fn days_covered(frequency: Frequency) -> u64 {
    match frequency {
        Frequency::Daily => 30,
        Frequency::Weekly => 12 * 7,
        Frequency::Monthly => 365,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
}

impl Frequency {
    pub fn parse(s: &str) -> Option<Frequency> {
        match s {
            "daily" => Some(Frequency::Daily),
            "weekly" => Some(Frequency::Weekly),
            "monthly" => Some(Frequency::Monthly),
            _ => None,
        }
    }
}

/// How a period's value comes from its days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// Bytes served: the days' sum.
    Sum,
    /// Bytes stored: the last known day's value.
    Last,
}

/// `YYYY-MM-DD` of a time in seconds since the epoch (UTC).
pub fn date(secs: u64) -> String {
    crate::swr::rfc3339(secs)[..10].to_string()
}

/// The dates of the `n` days ending with the one holding `now`, oldest first.
pub fn last_days(now: u64, n: u64) -> Vec<String> {
    let today = now / 86_400;
    (0..n)
        .rev()
        .filter_map(|back| today.checked_sub(back))
        .map(|day| date(day * 86_400))
        .collect()
}

/// The date a day's period starts on: the day itself, its week's Monday,
/// or its month's first day.
fn period_start(day: &str, frequency: Frequency) -> String {
    match frequency {
        Frequency::Daily => day.to_string(),
        Frequency::Monthly => format!("{}-01", &day[..7]),
        Frequency::Weekly => {
            let secs = crate::swr::parse_time(day).unwrap_or(0);
            let days = secs / 86_400;
            // 1970-01-01 was a Thursday: Monday is 3 days on from it mod 7.
            let since_monday = (days + 3) % 7;
            date((days - since_monday.min(days)) * 86_400)
        }
    }
}

/// Groups daily figures (oldest first; `None` where a day has no figure)
/// into periods, oldest first. A period with no figure at all is left out.
pub fn series(
    daily: &[(String, Option<f64>)],
    frequency: Frequency,
    aggregate: Aggregate,
) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (day, value) in daily {
        let Some(v) = value else { continue };
        let start = period_start(day, frequency);
        match out.last_mut() {
            Some((s, acc)) if *s == start => match aggregate {
                Aggregate::Sum => *acc += v,
                Aggregate::Last => *acc = *v,
            },
            _ => out.push((start, *v)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(values: &[(&str, Option<f64>)]) -> Vec<(String, Option<f64>)> {
        values.iter().map(|(d, v)| (d.to_string(), *v)).collect()
    }

    #[test]
    fn last_days_end_today() {
        let now = crate::swr::parse_time("2026-11-28T13:00:00Z").unwrap();
        assert_eq!(
            last_days(now, 3),
            ["2026-11-26", "2026-11-27", "2026-11-28"]
        );
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2026-11-28 is a Saturday; its Monday is 2026-11-23.
        assert_eq!(period_start("2026-11-28", Frequency::Weekly), "2026-11-23");
        assert_eq!(period_start("2026-11-23", Frequency::Weekly), "2026-11-23");
        assert_eq!(period_start("2026-11-22", Frequency::Weekly), "2026-11-16");
        assert_eq!(period_start("2026-11-28", Frequency::Monthly), "2026-11-01");
    }

    #[test]
    fn sums_and_last_values_per_period() {
        let d = days(&[
            ("2026-11-21", Some(1.0)),
            ("2026-11-22", None),
            ("2026-11-23", Some(2.0)),
            ("2026-11-24", Some(4.0)),
        ]);
        assert_eq!(
            series(&d, Frequency::Weekly, Aggregate::Sum),
            [
                ("2026-11-16".to_string(), 1.0),
                ("2026-11-23".to_string(), 6.0)
            ]
        );
        assert_eq!(
            series(&d, Frequency::Weekly, Aggregate::Last),
            [
                ("2026-11-16".to_string(), 1.0),
                ("2026-11-23".to_string(), 4.0)
            ]
        );
        assert_eq!(series(&d, Frequency::Daily, Aggregate::Sum).len(), 3);
        assert_eq!(
            series(&d, Frequency::Monthly, Aggregate::Sum),
            [("2026-11-01".to_string(), 7.0)]
        );
    }
}
