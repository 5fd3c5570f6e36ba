//! `--plan`: what a run would send and how long its limits make it take at least, found by
//! running the run's own scheduler and global rate on a virtual clock. Nothing is sent and
//! nothing sleeps.
//!
//! Limits combine (12,000 requests at `-r 10/s --quota 5000/h` take longer than either alone),
//! so no formula adds them up, and no copy of them is kept here either (a copy drifts): the
//! plan is a driver. It gives the run's `Scheduler` (per-host queues, paces and quota
//! windows, the run's quota windows and budget, the sends of `--quota-state`; see `schedule`)
//! one job per request (a robots.txt fetch is a job of its host like any other), takes
//! tickets from it as a worker does, has the run's global pacer (`limits::pacer`) judge each
//! at the virtual now, and sends it at once: every request answered instantly, none failing,
//! none retried. When the pacer refuses, the clock moves to the instant it names; when no
//! ticket may leave, to the scheduler's next timer, which it fires.
//!
//! The time between two sends is a wait, charged to the limit that ended it (the pacer, or
//! the cause of the scheduler's timer); the limit charged the most is the one that binds.
//! Retries, redirects, response times and `--per-host-concurrency` are unknown without
//! sending, and a plan waits at a spent quota whatever `--on-quota` says, so the result is a
//! lower bound.
//!
//! Memory stays small on long lists: the plan feeds each host one job at a time, and keeps as
//! many hosts in the scheduler's view as a run reads jobs ahead, more only while every host
//! in view waits (as a run reads on for an idle worker). Hosts take turns in view, so that
//! all of them share the sends as if all were in view at once.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use crate::config::Config;
use crate::input::{ReadError, Source};
use crate::job::Job;
use crate::limits;
pub use crate::limits::ledger::Past;
use crate::limits::set;
use crate::resume::{Skip, Verdict};
use crate::schedule::{Cause, Scheduler, VirtualClock, MIN_LOOKAHEAD};

/// What a run would do: its requests, its hosts, and the least time its limits make it take.
/// Its `Display` is the text `--plan` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Requests this run would send (robots.txt included; at most the budget).
    requests: u64,
    /// Requests the input needs (robots.txt included).
    wanted: u64,
    /// robots.txt fetches among `wanted` (one per host with `--respect-robots`).
    robots: u64,
    /// The busiest hosts and their requests, busiest first (at most `BUSIEST`).
    hosts: Vec<(String, u64)>,
    host_count: usize,
    /// From the first send's earliest instant (now) to the last send.
    duration: Duration,
    /// The limit that binds, as the command line names it; `None` when nothing waits.
    binds: Option<String>,
    /// The budget ends the run before the input is done.
    stopped_by_budget: bool,
}

/// Hosts named in the plan's text.
const BUSIEST: usize = 5;

impl Plan {
    /// Requests this run would send: the input's (robots.txt fetches included), or the
    /// `--budget` if that is fewer.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The least time the limits make the run take, from now to its last send (response
    /// times, retries and redirects not included).
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The limit that binds, as the command line names it (`--quota 5000/1h`); `None`
    /// when the limits do not slow the run.
    pub fn binds(&self) -> Option<&str> {
        self.binds.as_deref()
    }
}

/// A limit a send may wait for; the index is the limit's place on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Rate,
    Quota(usize),
    PerHostRate,
    PerHostQuota(usize),
}

impl Limit {
    /// The limit a scheduler's timer waited for (`None`: none of the config's).
    fn of(cause: Cause) -> Option<Limit> {
        match cause {
            Cause::Pace => Some(Limit::PerHostRate),
            Cause::HostQuota(q) => Some(Limit::PerHostQuota(q)),
            Cause::Quota(q) => Some(Limit::Quota(q)),
            Cause::Other => None,
        }
    }
}

/// Hosts the plan keeps in the scheduler's view (each with one job queued): as many as a
/// run reads jobs ahead; more while every host in view waits, as a run reads on for an idle
/// worker.
const IN_VIEW: usize = MIN_LOOKAHEAD;

/// The plan's input: one job per request, one host's job at a time. Hosts take turns in view:
/// a host whose job is handed out leaves the view for the next host in line, and comes back
/// at the end of the line, so that every host gets its turns (as if all were in view, round
/// robin) while the scheduler holds a job for only so many of them, in memory.
struct Feed<'a> {
    /// Each host, busiest first.
    hosts: Vec<Fed<'a>>,
    /// Hosts with requests left and no job queued, in turn.
    line: VecDeque<usize>,
    /// Hosts with a job queued.
    in_view: usize,
}

/// A host of the feed.
struct Fed<'a> {
    name: &'a str,
    /// Its URL, while it has requests left (made when it first comes into view).
    url: Option<Box<Url>>,
    /// Requests not fed yet.
    left: u64,
}

impl<'a> Feed<'a> {
    fn new(needs: &[(&'a str, u64)]) -> Feed<'a> {
        Feed {
            hosts: needs
                .iter()
                .map(|&(name, left)| Fed {
                    name,
                    url: None,
                    left,
                })
                .collect(),
            line: (0..needs.len()).collect(),
            in_view: 0,
        }
    }

    /// The next job of the host at `i` (the job's index is that place, for `took`).
    fn job(&mut self, i: usize) -> Job {
        let host = &mut self.hosts[i];
        let url = host.url.get_or_insert_with(|| {
            // A name `host_str` gave reads back as that host.
            let url = Url::parse(&format!("http://{}/", host.name))
                .unwrap_or_else(|_| Url::parse("http://unnamed.invalid/").expect("a URL"));
            Box::new(url)
        });
        let job = Job {
            index: i as u64,
            url: url.as_str().to_string(),
            target: Ok(Url::clone(url)),
            passthrough: Vec::new(),
        };
        host.left -= 1;
        if host.left == 0 {
            host.url = None;
        }
        job
    }

    /// Brings up to `n` more hosts into view, the first in line first; false if none waits.
    fn widen(&mut self, scheduler: &Scheduler, n: usize) -> bool {
        let hosts: Vec<usize> = (0..n).map_while(|_| self.line.pop_front()).collect();
        let jobs: Vec<Job> = hosts.into_iter().map(|i| self.job(i)).collect();
        self.in_view += jobs.len();
        let widened = !jobs.is_empty();
        scheduler.push(jobs);
        widened
    }

    /// The job of the host at `i` was handed out: the host leaves the view (to the end of
    /// the line, if it has more), and the next in line comes in.
    fn took(&mut self, scheduler: &Scheduler, i: usize) {
        self.in_view -= 1;
        if self.hosts[i].left > 0 {
            self.line.push_back(i);
        }
        if self.in_view < IN_VIEW {
            self.widen(scheduler, 1);
        }
    }

    fn name(&self, i: usize) -> &'a str {
        self.hosts[i].name
    }
}

/// Counts the requests `source` asks for, per host name; a line that is not a fetchable
/// URL asks for none. With `skip` (`--resume`), a job already in the report asks for none,
/// and an input that is not the report's is refused, as the run would refuse it.
pub fn count_requests(
    source: &mut Source,
    mut skip: Option<Skip>,
) -> Result<HashMap<String, u64>, ReadError> {
    let mut hosts: HashMap<String, u64> = HashMap::new();
    while let Some(job) = source.next_job()? {
        let job = match &mut skip {
            None => job,
            Some(skip) => match skip.check(job, source.unit())? {
                Verdict::Done => continue,
                Verdict::Keep(job) => job,
            },
        };
        let Some(host) = job.target.as_ref().ok().and_then(|url| url.host_str()) else {
            continue;
        };
        match hosts.get_mut(host) {
            Some(n) => *n += 1,
            None => {
                hosts.insert(host.to_string(), 1);
            }
        }
    }
    if let Some(skip) = &mut skip {
        skip.finish()?;
    }
    Ok(hosts)
}

/// Simulates a run of `config`'s limits over `hosts` (requests per host name), with the
/// sends of `past` in the quota windows: every request leaves at the earliest instant that
/// every limit allows, none fails, none is retried.
pub fn simulate(config: &Config, hosts: &HashMap<String, u64>, past: &Past) -> Plan {
    simulate_sends(config, hosts, past, |_, _| {})
}

/// `simulate`, telling `on_send` each send: its instant on the virtual clock, and its host.
///
/// The run's scheduler, on a virtual clock, is given one job per request and the run's global
/// rate is its pacer: each task leaves when the scheduler hands it out and the pacer admits
/// it, is answered at once and finished; when none may leave, the clock moves on to the
/// scheduler's next timer. Every wait is charged to the limit that ended it.
pub(crate) fn simulate_sends(
    config: &Config,
    hosts: &HashMap<String, u64>,
    past: &Past,
    on_send: impl FnMut(Duration, &str),
) -> Plan {
    simulate_on(config, hosts, past, |_| {}, on_send)
}

/// `simulate_sends`, with `prepare` given the scheduler before anything is sent (tests hold a
/// host back with it).
fn simulate_on(
    config: &Config,
    hosts: &HashMap<String, u64>,
    past: &Past,
    prepare: impl FnOnce(&Scheduler),
    mut on_send: impl FnMut(Duration, &str),
) -> Plan {
    let robots_each = u64::from(config.respect_robots);
    let mut needs: Vec<(&str, u64)> = hosts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(h, n)| (h.as_str(), n + robots_each))
        .collect();
    // Busiest first, then by name: the plan does not depend on a map's order.
    needs.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let wanted: u64 = needs.iter().map(|(_, n)| n).sum();

    // The scheduler and the pacer of a run of `config` (robots.txt fetches are jobs of their
    // host like any other), on a clock that moves only when nothing may leave.
    let clock = Arc::new(VirtualClock::new());
    let t0 = clock.now();
    let scheduler = Scheduler::simulated(config, past, clock.clone());
    let pacer = limits::simulated_pacer(config, t0.into_std());
    prepare(&scheduler);
    let mut feed = Feed::new(&needs);
    feed.widen(&scheduler, IN_VIEW);

    let mut waits = [Duration::ZERO; 2];
    let mut quota_waits = vec![Duration::ZERO; config.quotas.len()];
    let mut host_quota_waits = vec![Duration::ZERO; config.per_host_quotas.len()];
    // What the wait since the last send was for.
    let mut waited: Option<Limit> = None;
    let mut last = t0;
    let mut sent = 0u64;
    while sent < wanted {
        if let Some(mut ticket) = scheduler.try_next() {
            let host = ticket.task().job.index as usize;
            // The next host in line (this one again, if it is alone) gets its job queued.
            feed.took(&scheduler, host);
            let mut at = clock.now();
            if let Some(pacer) = &pacer {
                // The ticket waits for the global token, holding its host, as a worker does.
                while let Err(allowed) = pacer.check_at(at.into_std()) {
                    clock.advance_to(Instant::from_std(allowed).max(at + Duration::from_nanos(1)));
                    scheduler.fire_due();
                    at = clock.now();
                    waited = Some(Limit::Rate);
                }
            }
            if ticket.go(at.into_std()) {
                match waited.take() {
                    None => {}
                    Some(Limit::Rate) => waits[0] += at - last,
                    Some(Limit::PerHostRate) => waits[1] += at - last,
                    Some(Limit::Quota(q)) => quota_waits[q] += at - last,
                    Some(Limit::PerHostQuota(q)) => host_quota_waits[q] += at - last,
                }
                last = at;
                sent += 1;
                on_send(at - t0, feed.name(host));
                drop(ticket.finish());
                continue;
            }
            // Refused (a plan has no cool-down; its host is due): it waits for the next turn.
            scheduler.requeue(ticket);
        }
        if scheduler.stopped_at().is_some() {
            // The budget is spent.
            break;
        }
        // Nothing may leave now: more hosts come into view, unless the run as a whole waits.
        if !scheduler.held_back() && feed.widen(&scheduler, IN_VIEW) {
            continue;
        }
        let Some(next) = scheduler.next_deadline() else {
            break;
        };
        clock.advance_to(next);
        if let Some(limit) = scheduler.fire_due().and_then(Limit::of) {
            waited = Some(limit);
        }
    }

    let named = [
        (
            waits[0],
            set::Limit::Rate {
                rate: config.rate,
                burst: config.burst,
            }
            .to_string(),
        ),
        (
            waits[1],
            set::Limit::PerHostRate(config.per_host_rate).to_string(),
        ),
    ]
    .into_iter()
    .chain(
        quota_waits
            .iter()
            .zip(&config.quotas)
            .map(|(w, q)| (*w, set::Limit::Quota(*q).to_string())),
    )
    .chain(
        host_quota_waits
            .iter()
            .zip(&config.per_host_quotas)
            .map(|(w, q)| (*w, set::Limit::PerHostQuota(*q).to_string())),
    );
    // The most waited for; the first named wins a tie.
    let binds = named
        .filter(|(w, _)| !w.is_zero())
        .fold(None::<(Duration, String)>, |best, (w, name)| match best {
            Some((b, _)) if b >= w => best,
            _ => Some((w, name)),
        })
        .map(|(_, name)| name);

    Plan {
        requests: sent,
        wanted,
        robots: robots_each * needs.len() as u64,
        hosts: needs
            .iter()
            .take(BUSIEST)
            .map(|(h, n)| (h.to_string(), *n))
            .collect(),
        host_count: needs.len(),
        duration: last - t0,
        binds,
        stopped_by_budget: sent < wanted && config.budget.is_some_and(|b| sent >= b),
    }
}

/// A duration rounded to the second (to the millisecond below one second), humantime-style.
fn duration_text(d: Duration) -> String {
    let rounded = if d < Duration::from_secs(1) {
        Duration::from_millis(d.as_millis() as u64)
    } else {
        Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() >= 500_000_000))
    };
    humantime::format_duration(rounded).to_string()
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plan: {} to {}",
            plural(self.wanted, "request", "requests"),
            plural(self.host_count as u64, "host", "hosts")
        )?;
        if self.robots > 0 {
            write!(f, ", {} of them for robots.txt", self.robots)?;
        }
        writeln!(f, " (nothing sent)")?;
        if !self.hosts.is_empty() {
            let busiest: Vec<String> = self
                .hosts
                .iter()
                .map(|(host, n)| format!("{host} {n}"))
                .collect();
            writeln!(f, "busiest hosts: {}", busiest.join(", "))?;
        }
        if self.stopped_by_budget {
            writeln!(
                f,
                "--budget {} stops the run after {}; --resume goes on with the other {}",
                self.requests,
                plural(self.requests, "request", "requests"),
                self.wanted - self.requests
            )?;
        }
        let binds = match &self.binds {
            Some(limit) => format!("bound by {limit}"),
            None => "the limits do not slow it".to_string(),
        };
        write!(
            f,
            "at least {} at the limits ({binds}); response times not included",
            duration_text(self.duration)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Judge, Request};
    use crate::limits::set::LimitSet;
    use crate::units::{Quota, Rate};
    use proptest::prelude::*;
    use std::time::SystemTime;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn quota(limit: u64, window_secs: u64) -> Quota {
        Quota {
            limit,
            window: Duration::from_secs(window_secs),
        }
    }

    fn per_second(n: u64) -> Rate {
        Rate::Every(Duration::from_nanos(1_000_000_000 / n))
    }

    fn one_host(n: u64) -> HashMap<String, u64> {
        HashMap::from([("a.test".to_string(), n)])
    }

    fn assert_near(got: Duration, want: f64, what: &str) {
        assert!(
            (got.as_secs_f64() - want).abs() < 1.0,
            "{what}: {got:?}, want {want} s"
        );
    }

    /// The window's granularity (W / 1,024, as `quota` keeps it): a bucket frees when its
    /// latest send leaves the window.
    const HOUR_GRAIN_SENDS_AT_10_PER_S: f64 = 3.5;

    #[test]
    fn a_rate_and_a_quota_together_take_longer_than_either_alone() {
        let both = Config {
            rate: per_second(10),
            quotas: vec![quota(5000, 3600)],
            ..Config::default()
        };
        let rate_only = Config {
            quotas: Vec::new(),
            ..both.clone()
        };
        let quota_only = Config {
            rate: Rate::Unlimited,
            ..both.clone()
        };
        let hosts = one_host(12_000);
        let alone = simulate(&rate_only, &hosts, &Past::default());
        assert_near(alone.duration, 1199.9, "the rate alone");
        assert_eq!(alone.binds(), Some("--rate 10/s --burst 1"));
        let alone = simulate(&quota_only, &hosts, &Past::default());
        // 5000 at once, 5000 an hour later, 2000 two hours later.
        assert_near(alone.duration, 7200.0, "the quota alone");
        assert_eq!(alone.binds(), Some("--quota 5000/1h"));

        // The first 5000 leave at 10/s over 499.9 s; the 5001st waits until the first
        // leaves the window, at 3600 s, and the second hour goes at 10/s again (its sends
        // free as the rate allows); the 10,001st waits until 7200 s, and the last 2000 take
        // 199.9 s: 7399.9 s with an exact sliding log. The window counts sends 0.1 s apart
        // in buckets of 36 (3.5 s), each freed when its latest send leaves, so each hour
        // starts 3.5 s later than an exact log would let it.
        let plan = simulate(&both, &hosts, &Past::default());
        assert_near(
            plan.duration,
            7399.9 + 2.0 * HOUR_GRAIN_SENDS_AT_10_PER_S,
            "rate and quota",
        );
        assert_eq!(plan.binds(), Some("--quota 5000/1h"));
        assert_eq!((plan.requests, plan.wanted), (12_000, 12_000));
        assert!(!plan.stopped_by_budget);
    }

    #[test]
    fn one_host_at_a_per_host_rate_waits_its_pace() {
        let config = Config {
            per_host_rate: per_second(1),
            ..Config::default()
        };
        let plan = simulate(&config, &one_host(10), &Past::default());
        assert_eq!(plan.duration, Duration::from_secs(9));
        assert_eq!(plan.binds(), Some("--per-host-rate 1/s"));
        assert_eq!((plan.requests, plan.host_count), (10, 1));
    }

    #[test]
    fn hosts_go_on_while_one_waits_for_its_pace() {
        // Three hosts at 1/s each, 10 each, under a global 10/s: the hosts' paces overlap,
        // so 30 requests take 9 s (plus the global spacing of the last round), not 27 s.
        let config = Config {
            per_host_rate: per_second(1),
            ..Config::default()
        };
        let hosts: HashMap<String, u64> = ["a.test", "b.test", "c.test"]
            .iter()
            .map(|h| (h.to_string(), 10))
            .collect();
        let plan = simulate(&config, &hosts, &Past::default());
        assert_eq!(plan.duration, Duration::from_millis(9200));
        assert_eq!(plan.binds(), Some("--per-host-rate 1/s"));
    }

    /// The plan runs the scheduler's own gates, not a copy of them: a host the scheduler
    /// holds back (a cool-down, which no limit of the config names) holds its sends in the
    /// plan back, while the other host goes on at once.
    #[test]
    fn a_host_the_scheduler_holds_back_is_held_back_in_the_plan() {
        let config = Config {
            rate: Rate::Unlimited,
            ..Config::default()
        };
        let hosts: HashMap<String, u64> =
            [("a.test".to_string(), 2), ("b.test".to_string(), 2)].into();
        let plan_of = |prepare: &dyn Fn(&Scheduler)| {
            let mut sends = Vec::new();
            let plan = simulate_on(&config, &hosts, &Past::default(), prepare, |at, host| {
                sends.push((at, host.to_string()))
            });
            (plan, sends)
        };
        let (plan, sends) = plan_of(&|_| {});
        assert_eq!(plan.duration, Duration::ZERO);
        assert_eq!(sends.len(), 4);
        let (plan, sends) = plan_of(&|s| s.cool_down("a.test", secs(30.0)));
        let at = |host: &str| -> Vec<Duration> {
            sends
                .iter()
                .filter(|(_, h)| h == host)
                .map(|(at, _)| *at)
                .collect()
        };
        assert_eq!(at("b.test"), [Duration::ZERO; 2]);
        assert_eq!(at("a.test"), [secs(30.0); 2]);
        assert_eq!(plan.duration, secs(30.0));
        assert_eq!(plan.requests, 4);
    }

    /// More hosts than the plan keeps in view share the sends as if all were in view: none
    /// is left to finish alone at its own pace after the others.
    #[test]
    fn hosts_beyond_the_view_take_their_turns_with_the_others() {
        let config = Config {
            rate: per_second(2000),
            per_host_rate: per_second(1),
            ..Config::default()
        };
        let n = IN_VIEW + 1000;
        let hosts: HashMap<String, u64> = (0..n).map(|i| (format!("h{i}.test"), 20)).collect();
        let plan = simulate(&config, &hosts, &Past::default());
        // Each host's turn comes every 2.5 s, after its pace: the rate alone decides.
        let total = n as u32 * 20;
        assert_eq!(plan.duration, Duration::from_micros(500) * (total - 1));
        assert_eq!(plan.binds(), Some("--rate 2000/s --burst 1"));
        // Without a rate, every host sends at once, then after its pace, which binds (the
        // hosts out of view meanwhile wait for their pace too).
        let unlimited = Config {
            rate: Rate::Unlimited,
            ..config
        };
        let hosts: HashMap<String, u64> = (0..n).map(|i| (format!("h{i}.test"), 2)).collect();
        let plan = simulate(&unlimited, &hosts, &Past::default());
        assert_eq!(plan.duration, Duration::from_secs(1));
        assert_eq!(plan.binds(), Some("--per-host-rate 1/s"));
    }

    #[test]
    fn a_single_request_takes_no_time_and_nothing_binds() {
        let plan = simulate(&Config::default(), &one_host(1), &Past::default());
        assert_eq!(plan.duration, Duration::ZERO);
        assert_eq!(plan.binds(), None);
        let plan = simulate(&Config::default(), &HashMap::new(), &Past::default());
        assert_eq!((plan.requests, plan.host_count), (0, 0));
        assert_eq!(plan.duration, Duration::ZERO);
    }

    #[test]
    fn a_burst_goes_at_once_then_at_the_rate() {
        let config = Config {
            rate: per_second(10),
            burst: std::num::NonZeroU32::new(5).unwrap(),
            ..Config::default()
        };
        // 5 at 0 s, then one per 0.1 s: the 10th at 0.5 s.
        let plan = simulate(&config, &one_host(10), &Past::default());
        assert_eq!(plan.duration, Duration::from_millis(500));
        assert_eq!(plan.binds(), Some("--rate 10/s --burst 5"));
    }

    #[test]
    fn past_usage_makes_a_quota_bind_sooner() {
        let config = Config {
            rate: Rate::Unlimited,
            quotas: vec![quota(10, 3600)],
            ..Config::default()
        };
        let fresh = simulate(&config, &one_host(5), &Past::default());
        assert_eq!((fresh.duration, fresh.binds()), (Duration::ZERO, None));
        // 8 sent half an hour ago: 2 go now, the 3rd when those 8 leave the window.
        let past = Past {
            run: vec![(SystemTime::now() - Duration::from_secs(1800), 8)],
            ..Past::default()
        };
        let plan = simulate(&config, &one_host(5), &past);
        assert_near(plan.duration, 1800.0, "with past usage");
        assert_eq!(plan.binds(), Some("--quota 10/1h"));
        // Sends older than the window count for nothing.
        let old = Past {
            run: vec![(SystemTime::now() - Duration::from_secs(7200), 8)],
            ..Past::default()
        };
        assert_eq!(
            simulate(&config, &one_host(5), &old).duration,
            Duration::ZERO
        );
    }

    #[test]
    fn past_usage_of_a_host_fills_its_per_host_quota() {
        let config = Config {
            rate: Rate::Unlimited,
            per_host_quotas: vec![quota(3, 60)],
            ..Config::default()
        };
        let hosts: HashMap<String, u64> =
            [("a.test".to_string(), 2), ("b.test".to_string(), 2)].into();
        let past = Past {
            hosts: HashMap::from([(
                "a.test".to_string(),
                vec![(SystemTime::now() - Duration::from_secs(20), 3)],
            )]),
            ..Past::default()
        };
        let plan = simulate(&config, &hosts, &past);
        // a.test's window is full for 40 s more; b.test is free.
        assert_near(plan.duration, 40.0, "a.test waits");
        assert_eq!(plan.binds(), Some("--per-host-quota 3/1m"));
    }

    #[test]
    fn a_budget_caps_the_requests_and_says_so() {
        let config = Config {
            rate: per_second(10),
            budget: Some(50),
            ..Config::default()
        };
        let plan = simulate(&config, &one_host(120), &Past::default());
        assert_eq!((plan.requests, plan.wanted), (50, 120));
        assert!(plan.stopped_by_budget);
        assert_eq!(plan.duration, Duration::from_millis(4900));
        let text = plan.to_string();
        assert!(
            text.contains(
                "--budget 50 stops the run after 50 requests; --resume goes on with the other 70"
            ),
            "{text}"
        );
        let within = Config {
            budget: Some(500),
            ..config
        };
        let plan = simulate(&within, &one_host(120), &Past::default());
        assert!(!plan.stopped_by_budget && plan.requests == 120);
        assert!(!plan.to_string().contains("--budget"));
    }

    #[test]
    fn robots_txt_adds_one_request_per_host() {
        let config = Config {
            respect_robots: true,
            ..Config::default()
        };
        let hosts: HashMap<String, u64> =
            [("a.test".to_string(), 4), ("b.test".to_string(), 1)].into();
        let plan = simulate(&config, &hosts, &Past::default());
        assert_eq!((plan.requests, plan.robots), (7, 2));
        assert_eq!(plan.duration, Duration::from_millis(600));
        assert!(plan
            .to_string()
            .starts_with("plan: 7 requests to 2 hosts, 2 of them for robots.txt (nothing sent)\n"));
    }

    #[test]
    fn the_text_names_the_counts_the_busiest_hosts_and_the_limit() {
        let config = Config {
            rate: per_second(10),
            quotas: vec![quota(5000, 3600)],
            ..Config::default()
        };
        let hosts: HashMap<String, u64> = [
            ("api.example.com", 10_000),
            ("b.example.com", 1500),
            ("c.example.com", 500),
        ]
        .iter()
        .map(|(h, n)| (h.to_string(), *n))
        .collect();
        let plan = simulate(&config, &hosts, &Past::default());
        assert_eq!(
            plan.to_string(),
            "plan: 12000 requests to 3 hosts (nothing sent)\n\
             busiest hosts: api.example.com 10000, b.example.com 1500, c.example.com 500\n\
             at least 2h 3m 27s at the limits (bound by --quota 5000/1h); response times not included"
        );
        let many: HashMap<String, u64> = (1..=7).map(|i| (format!("h{i}.test"), i)).collect();
        let text = simulate(&Config::default(), &many, &Past::default()).to_string();
        assert!(
            text.contains("busiest hosts: h7.test 7, h6.test 6, h5.test 5, h4.test 4, h3.test 3\n"),
            "{text}"
        );
        let one = simulate(&Config::default(), &one_host(1), &Past::default()).to_string();
        assert_eq!(
            one,
            "plan: 1 request to 1 host (nothing sent)\n\
             busiest hosts: a.test 1\n\
             at least 0s at the limits (the limits do not slow it); response times not included"
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration_text(secs(7406.9)), "2h 3m 27s");
        assert_eq!(duration_text(secs(9.4)), "9s");
        assert_eq!(duration_text(secs(0.25)), "250ms");
        assert_eq!(duration_text(Duration::ZERO), "0s");
    }

    fn any_rate() -> impl Strategy<Value = Rate> {
        prop_oneof![
            Just(Rate::Unlimited),
            (1u64..2_000_000).prop_map(|us| Rate::Every(Duration::from_micros(us))),
        ]
    }

    fn any_quotas() -> impl Strategy<Value = Vec<Quota>> {
        proptest::collection::vec(
            (1u64..12, 1u64..5_000_000).prop_map(|(limit, us)| Quota {
                limit,
                window: Duration::from_micros(us),
            }),
            0..3,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

        /// The send times `--plan` simulates pass `audit` under the same limits, with no
        /// tolerance at all: the plan keeps every limit the audit judges.
        #[test]
        fn the_send_times_a_plan_simulates_pass_the_audit(
            rate in any_rate(),
            burst in 1u32..6,
            quotas in any_quotas(),
            per_host_rate in any_rate(),
            per_host_quotas in any_quotas(),
            demand in proptest::collection::vec(1u64..30, 1..5),
        ) {
            let config = Config {
                rate,
                burst: std::num::NonZeroU32::new(burst).unwrap(),
                quotas,
                per_host_rate,
                per_host_quotas,
                ..Config::default()
            };
            let hosts: HashMap<String, u64> = demand
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("h{i}.test"), *n))
                .collect();
            let mut sends = Vec::new();
            let plan = simulate_sends(&config, &hosts, &Past::default(), |at, host| {
                sends.push((at, host.to_string()));
            });
            prop_assert_eq!(sends.len() as u64, plan.requests());
            let mut judge = Judge::new(LimitSet::of(&config), Vec::new(), Duration::ZERO);
            for (at, host) in &sends {
                judge.send(&Request { at: *at, host, status: Some(200), granted: false, sent: *at, spent: None });
            }
            let audit = judge.report(1);
            prop_assert!(audit.held, "{:?}", audit.lines);
        }
    }

    #[test]
    fn ten_million_requests_over_a_hundred_thousand_hosts_simulate_quickly() {
        // 10 million in a release build (`cargo test --release`, some 15 s on 2 busy cores:
        // each request goes through the run's scheduler); a twenty-fifth of it in a debug
        // build, which is some 20 times slower.
        let per_host: u64 = if cfg!(debug_assertions) { 4 } else { 100 };
        let total = 100_000 * per_host;
        let config = Config {
            rate: per_second(2000),
            per_host_rate: per_second(1),
            quotas: vec![quota(total / 10, 3600)],
            ..Config::default()
        };
        let hosts: HashMap<String, u64> = (0..100_000)
            .map(|i| (format!("h{i}.test"), per_host))
            .collect();
        let started = std::time::Instant::now();
        let plan = simulate(&config, &hosts, &Past::default());
        let took = started.elapsed();
        assert_eq!(plan.requests, total);
        assert_eq!(
            plan.binds(),
            Some(format!("--quota {}/1h", total / 10).as_str())
        );
        // Ten windows of an hour, each spent at 2000/s; each starts one bucket (W / 1,024)
        // after the last one's first sends, as the run's windows count them.
        let hour = 3600.0 + 3600.0 / 1024.0;
        let want = 9.0 * hour + (total / 10) as f64 / 2000.0;
        assert!(
            (plan.duration.as_secs_f64() - want).abs() < 2.0,
            "{:?}, want {want} s",
            plan.duration
        );
        // A generous bound for a busy machine.
        assert!(took < Duration::from_secs(30), "took {took:?}");
    }
}
