//! `ratefetch audit LOG... --plot rate.svg`: a picture of the run. Requests per second over
//! time, for all hosts and for the busiest `--plot-hosts N`, each limit the audit checks as
//! a dashed line (a quota as its average rate), and the 429 answers marked; drawn with
//! plotters as SVG. Two streaming passes over the logs (the busiest hosts are known only
//! after the first). Memory is bounded whatever the logs hold: each series counts in at most
//! `MAX_SLOTS` slots, which widen as the run's span grows (a century of span is as cheap as a
//! second), never one counter per request or per second.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::audit::{Asked, AuditError, Merged};
use crate::limits::set::{Limit, LimitSet};

/// Bins drawn at most: a long run is shown in wider bins (each still a rate per second).
const MAX_BINS: u64 = 1200;

/// Counters a series keeps at most: when a run outgrows them, each slot doubles in width.
const MAX_SLOTS: u64 = 4 * MAX_BINS;

/// What was drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Plotted {
    /// Requests in the logs.
    pub requests: u64,
    /// The hosts drawn as series of their own, busiest first.
    pub hosts: Vec<String>,
    /// Seconds per point.
    pub bin_seconds: u64,
}

/// Requests counted in slots of `width` seconds from the first request on. The width starts
/// at a second and doubles (pairs of slots merged) whenever a request falls past
/// `MAX_SLOTS` slots, so a series holds at most `MAX_SLOTS` counters whatever the span.
struct Slots {
    width: u64,
    counts: Vec<u64>,
}

impl Default for Slots {
    fn default() -> Slots {
        Slots {
            width: 1,
            counts: Vec::new(),
        }
    }
}

impl Slots {
    /// Counts a request `second` seconds after the first.
    fn add(&mut self, second: u64) {
        while second / self.width >= MAX_SLOTS {
            self.widen();
        }
        let slot = (second / self.width) as usize;
        if self.counts.len() <= slot {
            self.counts.resize(slot + 1, 0);
        }
        self.counts[slot] += 1;
    }

    /// Doubles the width of each slot.
    fn widen(&mut self) {
        self.counts = self
            .counts
            .chunks(2)
            .map(|pair| pair.iter().sum())
            .collect();
        self.width *= 2;
    }

    /// Widens the slots to `width` (a power of two at least this one's), so that series
    /// counted apart can be drawn in the same bins.
    fn widen_to(&mut self, width: u64) {
        while self.width < width {
            self.widen();
        }
    }

    /// (time of the bin's middle, requests per second in it) for every bin of `bin` seconds
    /// (a multiple of the slots' width) of a run that lasted `span` seconds. A last bin cut
    /// short by the end of the run counts only its time, and is left out if it holds less
    /// than half a bin (a few requests would show as a spike or a dip).
    fn points(&self, bin: u64, span: f64) -> Vec<(f64, f64)> {
        debug_assert_eq!(bin % self.width, 0, "bins are whole slots");
        let per_bin = (bin / self.width).max(1) as usize;
        let covered = (span.ceil() as u64).max(self.counts.len() as u64 * self.width);
        let bins = covered.div_ceil(bin);
        (0..bins)
            .filter_map(|b| {
                let from = (b * bin) as f64;
                let end = ((b + 1) * bin) as f64;
                let end = if end > span { span } else { end };
                if end - from < bin as f64 / 2.0 && b > 0 {
                    return None;
                }
                let n: u64 = self
                    .counts
                    .iter()
                    .skip(b as usize * per_bin)
                    .take(per_bin)
                    .sum();
                Some(((from + end) / 2.0, n as f64 / (end - from).max(1e-3)))
            })
            .collect()
    }
}

/// The width of the bins drawn for a run of `span` seconds counted in slots of `width`
/// seconds: whole slots, and at most about `MAX_BINS` of them.
fn bin_width(span: f64, width: u64) -> u64 {
    let seconds = (span.ceil() as u64).max(1);
    let slots = seconds.div_ceil(width);
    slots.div_ceil(MAX_BINS).max(1) * width
}

/// Seconds from `start` to `t` (µs), none before `start`.
fn second_of(t: i64, start: i64) -> u64 {
    u64::try_from(t.saturating_sub(start) / 1_000_000).unwrap_or(0)
}

/// Draws the logs' requests per second into `path` (SVG), with `limits` as lines and the
/// `hosts` busiest hosts as series of their own.
pub fn plot(
    logs: &[PathBuf],
    asked: &Asked,
    path: &Path,
    hosts: usize,
) -> Result<Plotted, AuditError> {
    // Pass 1: all hosts, 429s, and the requests of each host.
    let mut sends = Merged::open(logs)?;
    let limits = asked.over(sends.limits());
    let (mut all, mut refused) = (Slots::default(), Slots::default());
    let mut per_host: HashMap<String, u64> = HashMap::new();
    let mut first = None;
    // The latest send (logs are in send order only within their announced disorder).
    let mut last = i64::MIN;
    let mut requests = 0u64;
    while let Some(s) = sends.next()? {
        let start = *first.get_or_insert(s.t);
        last = last.max(s.t);
        let second = second_of(s.t, start);
        all.add(second);
        if s.status == Some(429) {
            refused.add(second);
        }
        requests += 1;
        match per_host.get_mut(&s.host) {
            Some(n) => *n += 1,
            None => {
                per_host.insert(s.host, 1);
            }
        }
    }
    let mut busiest: Vec<(String, u64)> = per_host.into_iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    busiest.truncate(hosts);
    let drawn: Vec<String> = busiest.into_iter().map(|(h, _)| h).collect();

    // Pass 2: the busiest hosts, each on its own.
    let mut of_host: Vec<Slots> = drawn
        .iter()
        .map(|_| Slots {
            width: all.width,
            counts: Vec::new(),
        })
        .collect();
    if !drawn.is_empty() {
        let index: HashMap<&str, usize> = drawn
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        let mut sends = Merged::open(logs)?;
        while let Some(s) = sends.next()? {
            // A log appended to since the first pass has requests past its end.
            if s.t > last {
                continue;
            }
            if let (Some(&i), Some(start)) = (index.get(s.host.as_str()), first) {
                of_host[i].add(second_of(s.t, start));
            }
        }
    }

    // The run from its first send to its last, at least a second.
    let span = (first.map_or(0, |f| last.saturating_sub(f)) as f64 / 1e6).max(1.0);
    let width = of_host
        .iter()
        .map(|s| s.width)
        .fold(all.width.max(refused.width), u64::max);
    for slots in std::iter::once(&mut all)
        .chain(std::iter::once(&mut refused))
        .chain(&mut of_host)
    {
        slots.widen_to(width);
    }
    let bin = bin_width(span, width);
    let series = Series {
        all: all.points(bin, span),
        refused: refused.points(bin, span),
        hosts: drawn
            .iter()
            .zip(&of_host)
            .map(|(h, s)| (h.clone(), s.points(bin, span)))
            .collect(),
        lines: limit_lines(&limits),
        seconds: span,
        bin,
    };
    draw(path, &series).map_err(|e| AuditError::Write {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    Ok(Plotted {
        requests,
        hosts: drawn,
        bin_seconds: bin,
    })
}

/// Each limit as a rate per second, with its name (a quota as its average).
fn limit_lines(limits: &LimitSet) -> Vec<(String, f64)> {
    let average = |q: crate::units::Quota| q.limit as f64 / q.window.as_secs_f64();
    limits
        .limits()
        .into_iter()
        .filter_map(|limit| match limit {
            Limit::Rate { rate, .. } | Limit::PerHostRate(rate) => {
                Some((limit.to_string(), rate.per_second()?))
            }
            Limit::Quota(q) | Limit::PerHostQuota(q) | Limit::FixedQuota(q) => {
                Some((format!("{limit} (its average)"), average(q)))
            }
        })
        .collect()
}

struct Series {
    all: Vec<(f64, f64)>,
    refused: Vec<(f64, f64)>,
    hosts: Vec<(String, Vec<(f64, f64)>)>,
    lines: Vec<(String, f64)>,
    seconds: f64,
    bin: u64,
}

fn draw(path: &Path, s: &Series) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let peak = s
        .all
        .iter()
        .map(|p| p.1)
        .chain(s.lines.iter().map(|l| l.1))
        .fold(1.0f64, f64::max);
    let per = if s.bin == 1 {
        "each second".to_string()
    } else {
        format!("averaged over {} s", s.bin)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("requests per second ({per})"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..s.seconds, 0f64..peak * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first request")
        .y_desc("requests / s")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            s.all.iter().copied(),
            BLACK.stroke_width(2),
        ))?
        .label("all hosts")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    for (i, (host, points)) in s.hosts.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(1),
            ))?
            .label(host.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    for (i, (name, rate)) in s.lines.iter().enumerate() {
        let color = [RED, BLUE, MAGENTA, CYAN][i % 4].mix(0.8);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, *rate), (s.seconds, *rate)],
                8,
                5,
                color.stroke_width(1),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    let refused: Vec<(f64, f64)> = s.refused.iter().copied().filter(|p| p.1 > 0.0).collect();
    if !refused.is_empty() {
        chart
            .draw_series(
                refused
                    .iter()
                    .map(|&p| Cross::new(p, 4, RED.stroke_width(2))),
            )?
            .label("429 answers / s")
            .legend(|(x, y)| Cross::new((x + 10, y), 4, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_average_the_seconds_they_hold() {
        let mut s = Slots::default();
        for second in [0, 0, 1, 3, 3, 3] {
            s.add(second);
        }
        assert_eq!(
            s.points(1, 4.0),
            [(0.5, 2.0), (1.5, 1.0), (2.5, 0.0), (3.5, 3.0)]
        );
        assert_eq!(
            s.points(3, 4.0),
            [(1.5, 1.0)],
            "a last bin of a third is left out"
        );
        assert_eq!(s.points(2, 4.0), [(1.0, 1.5), (3.0, 1.5)]);
        // The run ended 0.75 s into its last second: three requests in it are 4/s.
        assert_eq!(s.points(1, 3.75).last(), Some(&(3.375, 4.0)));
        assert_eq!(
            s.points(1, 3.25).len(),
            3,
            "a quarter of a second is left out"
        );
    }

    #[test]
    fn a_century_of_span_keeps_a_bounded_number_of_slots_and_bins() {
        // issue 19: one counter per second of a 1970 → 2100 log was 16 GB.
        let century = 130 * 365 * 86_400u64;
        let mut s = Slots::default();
        for second in [0, 1, 2, century / 2, century] {
            s.add(second);
        }
        assert!(
            s.counts.len() as u64 <= MAX_SLOTS,
            "{} slots",
            s.counts.len()
        );
        assert_eq!(
            s.counts.iter().sum::<u64>(),
            5,
            "no request lost by widening"
        );
        assert_eq!(
            s.counts[0], 3,
            "the first three seconds share the first slot"
        );
        let bin = bin_width(century as f64, s.width);
        assert_eq!(bin % s.width, 0);
        let points = s.points(bin, century as f64);
        assert!(
            points.len() as u64 <= MAX_BINS + 1,
            "{} points",
            points.len()
        );
        let total: f64 = points.iter().map(|p| p.1 * bin as f64).sum();
        // The request at the very end may sit in a last bin too short to draw.
        assert!((4.0 - 1e-6..=5.0 + 1e-6).contains(&total), "{total}");
        // Series counted apart are drawn in the same bins.
        let mut short = Slots::default();
        short.add(10);
        short.widen_to(s.width);
        assert_eq!(short.width, s.width);
        assert_eq!(short.counts, [1]);
    }

    #[test]
    fn a_short_run_keeps_one_second_bins() {
        let mut s = Slots::default();
        s.add(0);
        s.add(599);
        assert_eq!(s.width, 1);
        assert_eq!(bin_width(600.0, s.width), 1);
        assert_eq!(bin_width(3600.0, s.width), 3);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// issue 19: sends anywhere from 1970 to 9999 are drawn in a bounded number of
        /// bins, each series in a bounded number of slots.
        #[test]
        fn any_span_is_drawn_in_bounded_bins(
            seconds in proptest::collection::vec(0..253_402_300_799u64, 1..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("log.jsonl");
            let mut text = String::from(
                "{\"ratefetch_log\":1,\"max_disorder_ms\":1000,\"limits\":{\"rate\":\"10/s\"}}\n",
            );
            for (i, s) in seconds.iter().enumerate() {
                let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(*s);
                let host = ["a", "b"][i % 2];
                text.push_str(&format!(
                    "{{\"t\":\"{}\",\"host\":\"{host}\",\"status\":429}}\n",
                    humantime::format_rfc3339_micros(t)
                ));
            }
            std::fs::write(&log, text).unwrap();
            let svg = dir.path().join("plot.svg");
            let drawn = plot(&[log], &Asked::default(), &svg, 2).unwrap();
            proptest::prop_assert_eq!(drawn.requests, seconds.len() as u64);
            let span = seconds.iter().max().unwrap() - seconds.iter().min().unwrap();
            proptest::prop_assert!(drawn.bin_seconds <= span.div_ceil(MAX_BINS) * 2 + 1, "{drawn:?} over {span} s");
            proptest::prop_assert!(svg.exists());
        }
    }
}
