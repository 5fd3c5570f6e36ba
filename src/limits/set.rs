//! `LimitSet`: the limits of a run as one value, with one naming. Its `Display` (the limits
//! as the command line names them, `--rate 10/s --burst 1 --quota 5000/1h`) is what
//! messages, the audit's report, the plot, `--plan` and the spec stored with a Redis key
//! show; its serde form is the `limits` of a request log's header, written and read by
//! derive.
//!
//! Both are exact: a rate is written per second (`0.5/s`, `150/s`) when that text reads
//! back as the same period to the nanosecond, else as its period (`1/6666666ns`), so equal
//! limits give equal texts and different limits different ones (a Redis key compares them).

use std::fmt;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::limits::gcra::Pace;
use crate::units::{parse_quota, parse_rate, Quota, Rate};

/// The limits of a run: a struct with named fields, so that later ceilings (adaptation,
/// announced limits) find their place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSet {
    /// `--rate` (`null` in a log: unlimited).
    #[serde(with = "rate_serde", default = "unlimited")]
    pub rate: Rate,
    /// `--burst`: requests that may leave at once at `rate`.
    #[serde(default = "burst_one")]
    pub burst: NonZeroU32,
    /// `--quota`s: at most N in any window of length W.
    #[serde(with = "quotas_serde", default)]
    pub quotas: Vec<Quota>,
    /// `--per-host-rate` (burst 1).
    #[serde(with = "rate_serde", default = "unlimited")]
    pub per_host_rate: Rate,
    /// `--per-host-quota`s.
    #[serde(with = "quotas_serde", default)]
    pub per_host_quotas: Vec<Quota>,
}

fn unlimited() -> Rate {
    Rate::Unlimited
}

fn burst_one() -> NonZeroU32 {
    NonZeroU32::MIN
}

impl Default for LimitSet {
    /// No limits at all.
    fn default() -> LimitSet {
        LimitSet {
            rate: Rate::Unlimited,
            burst: NonZeroU32::MIN,
            quotas: Vec::new(),
            per_host_rate: Rate::Unlimited,
            per_host_quotas: Vec::new(),
        }
    }
}

/// One limit of a set, named as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `--rate R --burst B`.
    Rate { rate: Rate, burst: NonZeroU32 },
    /// `--quota N/W` (sliding).
    Quota(Quota),
    /// `--per-host-rate R`.
    PerHostRate(Rate),
    /// `--per-host-quota N/W`.
    PerHostQuota(Quota),
    /// `--fixed-quota N/W`: a quota judged as a fixed window (`audit` only).
    FixedQuota(Quota),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Rate { rate, burst } => write!(f, "--rate {} --burst {burst}", rate),
            Limit::Quota(q) => write!(f, "--quota {q}"),
            Limit::PerHostRate(r) => write!(f, "--per-host-rate {}", r),
            Limit::PerHostQuota(q) => write!(f, "--per-host-quota {q}"),
            Limit::FixedQuota(q) => write!(f, "--fixed-quota {q}"),
        }
    }
}

impl LimitSet {
    /// The limits a run of `config` keeps.
    pub fn of(config: &Config) -> LimitSet {
        LimitSet {
            rate: config.rate,
            burst: config.burst,
            quotas: config.quotas.clone(),
            per_host_rate: config.per_host_rate,
            per_host_quotas: config.per_host_quotas.clone(),
        }
    }

    /// The run's GCRA: period 1/R and burst B; `None` when the rate is unlimited.
    pub fn global_pace(&self) -> Option<Pace> {
        self.rate.period().map(|period| Pace {
            period,
            burst: self.burst.get(),
        })
    }

    /// Each host's GCRA: period 1/R and burst 1; `None` without a per-host rate.
    pub fn host_pace(&self) -> Option<Pace> {
        self.per_host_rate.period().map(Pace::every)
    }

    /// Each limit in force, in the order of the command line's help: the rate, the quotas,
    /// the per-host rate, the per-host quotas.
    pub fn limits(&self) -> Vec<Limit> {
        let mut limits = Vec::new();
        if self.rate != Rate::Unlimited {
            limits.push(Limit::Rate {
                rate: self.rate,
                burst: self.burst,
            });
        }
        limits.extend(self.quotas.iter().copied().map(Limit::Quota));
        if self.per_host_rate != Rate::Unlimited {
            limits.push(Limit::PerHostRate(self.per_host_rate));
        }
        limits.extend(
            self.per_host_quotas
                .iter()
                .copied()
                .map(Limit::PerHostQuota),
        );
        limits
    }
}

impl fmt::Display for LimitSet {
    /// The limits as the command line names them, `--rate 10/s --burst 1 --quota 5000/1h`;
    /// `no limits` when none is in force.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limits = self.limits();
        if limits.is_empty() {
            return f.write_str("no limits");
        }
        for (i, l) in limits.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

mod rate_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(rate: &Rate, s: S) -> Result<S::Ok, S::Error> {
        match rate {
            Rate::Unlimited => s.serialize_none(),
            r => s.serialize_some(&r.to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Rate::Unlimited),
            Some(text) => parse_rate(&text).map_err(serde::de::Error::custom),
        }
    }
}

mod quotas_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(quotas: &[Quota], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(quotas.iter().map(Quota::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Quota>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|q| parse_quota(q).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn set(rate: Rate, burst: u32) -> LimitSet {
        LimitSet {
            rate,
            burst: NonZeroU32::new(burst).unwrap(),
            ..LimitSet::default()
        }
    }

    #[test]
    fn half_a_request_per_second_has_one_spelling() {
        let half = parse_rate("0.5/s").unwrap();
        assert_eq!(parse_rate("30/m").unwrap(), half);
        let limits = set(half, 1);
        assert_eq!(limits.to_string(), "--rate 0.5/s --burst 1");
        let json = serde_json::to_string(&limits).unwrap();
        assert_eq!(
            json,
            r#"{"rate":"0.5/s","burst":1,"quotas":[],"per_host_rate":null,"per_host_quotas":[]}"#
        );
        assert_eq!(serde_json::from_str::<LimitSet>(&json).unwrap(), limits);
    }

    #[test]
    fn every_limit_is_named_as_the_command_line_names_it() {
        let limits = LimitSet {
            rate: parse_rate("10/s").unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
            quotas: vec![
                parse_quota("5000/h").unwrap(),
                parse_quota("30/3s").unwrap(),
            ],
            per_host_rate: parse_rate("1/s").unwrap(),
            per_host_quotas: vec![parse_quota("3/1s").unwrap()],
        };
        assert_eq!(
            limits.to_string(),
            "--rate 10/s --burst 3 --quota 5000/1h --quota 30/3s --per-host-rate 1/s \
             --per-host-quota 3/1s"
        );
        assert_eq!(LimitSet::default().to_string(), "no limits");
        assert_eq!(
            limits.global_pace(),
            Some(Pace {
                period: Duration::from_millis(100),
                burst: 3
            })
        );
        assert_eq!(
            limits.host_pace(),
            Some(Pace::every(Duration::from_secs(1)))
        );
        assert_eq!(LimitSet::default().global_pace(), None);
    }

    #[test]
    fn a_rate_per_second_that_would_not_read_back_exactly_is_written_as_its_period() {
        let odd = Rate::Every(Duration::from_nanos(6_666_666));
        assert_eq!(odd.to_string(), "1/6666666ns");
        assert_eq!(parse_rate("1/6666666ns"), Ok(odd));
        assert!(parse_rate("1/0ns").is_err());
        for (given, text) in [
            ("600/m", "10/s"),
            ("30/m", "0.5/s"),
            ("5000/h", "5000/h"),
            ("150/s", "150/s"),
        ] {
            assert_eq!(parse_rate(given).unwrap().to_string(), text, "{given}");
        }
    }

    #[test]
    fn a_version_1_header_reads_with_its_defaults() {
        let v1: LimitSet = serde_json::from_str(
            r#"{"rate":"10/s","burst":1,"quotas":["5000/1h"],"per_host_rate":null,"per_host_quotas":[]}"#,
        )
        .unwrap();
        assert_eq!(v1.to_string(), "--rate 10/s --burst 1 --quota 5000/1h");
        let empty: LimitSet = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, LimitSet::default());
        assert!(serde_json::from_str::<LimitSet>(r#"{"rate":"NaN/s"}"#).is_err());
        assert!(serde_json::from_str::<LimitSet>(r#"{"burst":0}"#).is_err());
    }

    fn any_rate() -> impl Strategy<Value = Rate> {
        prop_oneof![
            Just(Rate::Unlimited),
            (1u64..10_000_000_000).prop_map(|ns| Rate::Every(Duration::from_nanos(ns))),
            (1u32..100_000, 0u32..4).prop_map(|(n, d)| {
                parse_rate(&format!("{}/s", f64::from(n) / 10f64.powi(d as i32))).unwrap()
            }),
        ]
    }

    fn any_quota() -> impl Strategy<Value = Quota> {
        (1u64..100_000, 1u64..100_000_000_000).prop_map(|(limit, ns)| Quota {
            limit,
            window: Duration::from_nanos(ns),
        })
    }

    pub(crate) fn any_limits() -> impl Strategy<Value = LimitSet> {
        (
            any_rate(),
            1u32..20,
            proptest::collection::vec(any_quota(), 0..3),
            any_rate(),
            proptest::collection::vec(any_quota(), 0..3),
        )
            .prop_map(
                |(rate, burst, quotas, per_host_rate, per_host_quotas)| LimitSet {
                    rate,
                    burst: NonZeroU32::new(burst).unwrap(),
                    quotas,
                    per_host_rate,
                    per_host_quotas,
                },
            )
    }

    proptest! {
        /// The header's form reads back as the same limits, and two sets have the same text
        /// (the spec a Redis key compares) exactly when they are equal.
        #[test]
        fn the_text_and_the_serde_form_round_trip_exactly(a in any_limits(), b in any_limits()) {
            let json = serde_json::to_string(&a).unwrap();
            prop_assert_eq!(&serde_json::from_str::<LimitSet>(&json).unwrap(), &a);
            prop_assert_eq!(a.to_string() == b.to_string(), a.limits() == b.limits());
            // One nanosecond apart is another limit, and another text.
            if let Rate::Every(p) = a.rate {
                let near = LimitSet { rate: Rate::Every(p + Duration::from_nanos(1)), ..a.clone() };
                prop_assert_ne!(near.to_string(), a.to_string());
            }
        }
    }
}
