//! `ratefetch audit LOG... --plot rate.svg`: a picture of the run. Requests per second over
//! time, for all hosts and for the busiest `--plot-hosts N`, each limit the audit checks as
//! a dashed line (a quota as its average rate), and the 429 answers marked; drawn with
//! plotters as SVG. Two streaming passes over the logs (the busiest hosts are known only
//! after the first), so memory is one counter per second of the run per series, never the
//! requests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::audit::{AuditError, Limits, Merged};
use crate::units::Rate;

/// Bins drawn at most: a long run is shown in wider bins (each still a rate per second).
const MAX_BINS: usize = 1200;

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

/// Per-second counts from the first request on.
#[derive(Default)]
struct Seconds(Vec<u32>);

impl Seconds {
    fn add(&mut self, second: usize) {
        if self.0.len() <= second {
            self.0.resize(second + 1, 0);
        }
        self.0[second] += 1;
    }

    /// (time of the bin's middle, requests per second in it) for every bin of `bin` seconds
    /// of a run that lasted `span` seconds. A last bin cut short by the end of the run counts
    /// only its time, and is left out if it holds less than half a bin (a few requests would
    /// show as a spike or a dip).
    fn points(&self, bin: usize, span: f64) -> Vec<(f64, f64)> {
        let bins = (span.ceil() as usize).max(self.0.len()).div_ceil(bin);
        (0..bins)
            .filter_map(|b| {
                let from = (b * bin) as f64;
                let end = ((b + 1) * bin) as f64;
                let end = if end > span { span } else { end };
                if end - from < bin as f64 / 2.0 && b > 0 {
                    return None;
                }
                let n: u64 = self
                    .0
                    .iter()
                    .skip(b * bin)
                    .take(bin)
                    .map(|&n| u64::from(n))
                    .sum();
                Some(((from + end) / 2.0, n as f64 / (end - from).max(1e-3)))
            })
            .collect()
    }
}

/// Draws the logs' requests per second into `path` (SVG), with `limits` as lines and the
/// `hosts` busiest hosts as series of their own.
pub fn plot(
    logs: &[PathBuf],
    limits: Option<&Limits>,
    path: &Path,
    hosts: usize,
) -> Result<Plotted, AuditError> {
    // Pass 1: all hosts, 429s, and the requests of each host.
    let mut sends = Merged::open(logs)?;
    let limits = limits.cloned().unwrap_or_else(|| sends.limits());
    let (mut all, mut refused) = (Seconds::default(), Seconds::default());
    let mut per_host: HashMap<String, u64> = HashMap::new();
    let mut first = None;
    let mut last = 0;
    let mut requests = 0u64;
    while let Some(s) = sends.next()? {
        let start = *first.get_or_insert(s.t);
        last = s.t;
        let second = usize::try_from((s.t - start) / 1_000_000).unwrap_or(0);
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
    let mut of_host: Vec<Seconds> = drawn.iter().map(|_| Seconds::default()).collect();
    if !drawn.is_empty() {
        let index: HashMap<&str, usize> = drawn
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        let mut sends = Merged::open(logs)?;
        while let Some(s) = sends.next()? {
            if let (Some(&i), Some(start)) = (index.get(s.host.as_str()), first) {
                of_host[i].add(usize::try_from((s.t - start) / 1_000_000).unwrap_or(0));
            }
        }
    }

    // The run from its first send to its last, at least a second.
    let span = (first.map_or(0, |f| last - f) as f64 / 1e6).max(1.0);
    let bin = (span.ceil() as usize).div_ceil(MAX_BINS).max(1);
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
        bin_seconds: bin as u64,
    })
}

/// Each limit as a rate per second, with its name.
fn limit_lines(limits: &Limits) -> Vec<(String, f64)> {
    let mut lines = Vec::new();
    if let Some((rate, burst)) = limits.rate {
        if let Some(r) = rate.per_second() {
            lines.push((format!("--rate {rate} (burst {burst})"), r));
        }
    }
    for q in &limits.quotas {
        let r = q.limit as f64 / q.window.as_secs_f64();
        lines.push((format!("--quota {q} (its average)"), r));
    }
    if let Some(rate) = limits.per_host_rate.filter(|r| *r != Rate::Unlimited) {
        if let Some(r) = rate.per_second() {
            lines.push((format!("--per-host-rate {rate}"), r));
        }
    }
    for q in &limits.per_host_quotas {
        let r = q.limit as f64 / q.window.as_secs_f64();
        lines.push((format!("--per-host-quota {q} (its average)"), r));
    }
    lines
}

struct Series {
    all: Vec<(f64, f64)>,
    refused: Vec<(f64, f64)>,
    hosts: Vec<(String, Vec<(f64, f64)>)>,
    lines: Vec<(String, f64)>,
    seconds: f64,
    bin: usize,
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
        let mut s = Seconds::default();
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
}
