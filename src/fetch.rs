//! Fetch: one job, start to finish. One shared `reqwest::Client` (connection pool, rustls,
//! gzip/brotli/zstd/deflate), a per-attempt timeout that covers the body, a streamed body
//! with a byte cap, redirects up to a limit, retries with exponential backoff, full jitter
//! and `Retry-After`. Errors are classified here, once, into `ErrorKind`s.
//!
//! Nothing a server sends can make this module panic: every failure becomes an `Outcome`.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION,
    PROXY_AUTHORIZATION, RETRY_AFTER, USER_AGENT, WWW_AUTHENTICATE,
};
use reqwest::{redirect, Client, Response, StatusCode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{Config, OnQuota};
use crate::cookies::Cookies;
use crate::encoding;
use crate::error::{Error, ErrorKind, Failure};
use crate::extract::{self, Extractor};
use crate::job::{Hop, Next, Outcome};
use crate::limits::allowance::{Allowances, Answer, Wait};
use crate::limits::announce::{self, Announced};
use crate::limits::Limits;
use crate::reqlog::{Entry, RequestLog};
use crate::retry::{self, Decision, Head, Step};
use crate::robots::{self, Robots, Rules};
use crate::save::Saving;
use crate::schedule::{Scheduler, Ticket};
use crate::shared::{Grant, Shared, SharedError};
use crate::shutdown::Shutdown;

/// Request headers that are not sent to another host after a redirect (as browsers and
/// reqwest do): credentials for one host must not leak to the next.
const SENSITIVE: [HeaderName; 4] = [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, WWW_AUTHENTICATE];

/// The most of a body read (and dropped) to keep a connection reusable when its response is
/// a redirect or a retryable status.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How long a task waits (in the scheduler) before it looks again for a robots.txt that
/// another task is fetching.
const ROBOTS_WAIT: Duration = Duration::from_millis(50);

/// Refusals a job may meet that the server's announced limit explains, retried after the
/// reset without spending an attempt; beyond this they count as attempts (a server whose
/// headers are wrong cannot keep a job forever).
const FREE_REFUSALS: u8 = 10;

/// Under `--on-quota stop`, an announced pause longer than this stops the run; a shorter one
/// (a burst limit such as `r=0;t=1`) is waited for.
const STOP_AFTER: Duration = Duration::from_secs(10);

/// The most of a body kept in memory for `--extract` rules that read it, whatever
/// `--max-body` says (with `--max-body 0`, no cap, the rules see this much).
pub const RULES_WINDOW: usize = 64 << 20;

/// How much of an HTML body is kept for the title: titles live in `<head>`.
pub const TITLE_WINDOW: usize = 1 << 20;

/// Builds the one client of a run. Redirects are not followed by reqwest: every hop goes
/// through the limits like any request (see `Fetcher::fetch`). With `cookies`, the run keeps
/// a cookie store.
pub fn build_client(config: &Config, cookies: Option<&Cookies>) -> Result<Client, Error> {
    let mut headers = config.headers.clone();
    for name in &SENSITIVE {
        headers.remove(name);
    }
    headers.remove(USER_AGENT);
    let mut builder = Client::builder()
        .use_rustls_tls()
        .default_headers(headers)
        .redirect(redirect::Policy::none())
        .tcp_nodelay(true)
        // Idle connections hold open files: no more per host than can be used at once.
        .pool_max_idle_per_host(
            config
                .per_host_concurrency
                .map_or(config.concurrency, |n| n.min(config.concurrency)),
        )
        .pool_idle_timeout(config.idle_timeout)
        .gzip(true)
        .brotli(true)
        .zstd(true)
        .deflate(true);
    // Zero is no limit (reqwest's zero would end every connect that does not finish at once).
    if !config.connect_timeout.is_zero() {
        builder = builder.connect_timeout(config.connect_timeout);
    }
    builder = builder.user_agent(user_agent(config));
    if config.no_proxy {
        builder = builder.no_proxy();
    } else if let Some(url) = &config.proxy {
        // One proxy for every scheme, as curl's -x; NO_PROXY still applies, as with curl.
        let proxy = reqwest::Proxy::all(url.as_str())
            .map_err(|e| Error::Client(format!("--proxy {url}: {}", error_text(&e))))?
            .no_proxy(reqwest::NoProxy::from_env());
        builder = builder.proxy(proxy);
    }
    if let Some(cookies) = cookies {
        builder = builder.cookie_provider(cookies.jar());
    }
    if let Some(path) = &config.cacert {
        builder = builder.tls_built_in_root_certs(false);
        for root in trusted_roots(path)? {
            builder = builder.add_root_certificate(root);
        }
    }
    if config.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| Error::Client(error_text(&e)))
}

/// The certificates of a `--cacert` file (PEM, one or more).
pub fn trusted_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let cacert = |reason: String| Error::Cacert {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| cacert(e.to_string()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| cacert(error_text(&e)))?;
    if roots.is_empty() {
        return Err(cacert("no PEM certificate in it".to_string()));
    }
    Ok(roots)
}

/// Fetches jobs. Cheap to share: the client and the limits are `Arc`s inside.
pub struct Fetcher {
    client: Client,
    config: Arc<Config>,
    limits: Arc<Limits>,
    /// Per-host state: cool-downs, Crawl-delays, slots for robots.txt.
    scheduler: Scheduler,
    /// The `-H` headers of `SENSITIVE`, sent only to the job's own host.
    sensitive: Vec<(HeaderName, HeaderValue)>,
    /// How much of a body is kept in memory for extraction rules that read it (0: none);
    /// `--save-bodies` streams bodies to disk instead.
    rules_window: usize,
    /// Whether some rule reads response headers.
    header_rules: bool,
    /// robots.txt rules per origin, with `--respect-robots`.
    robots: Option<Robots>,
    /// `--log-requests`.
    log: Option<RequestLog>,
    /// The limits servers announce (off with `--ignore-ratelimit-headers`).
    allowances: Option<Allowances>,
    /// `--redis`: every request takes a grant from the shared limits before it leaves.
    shared: Option<Arc<Shared>>,
    /// Requests that found no open file to connect with.
    starving: Starving,
    /// `--cookies`: the run's cookie store.
    cookies: Option<Arc<Cookies>>,
}

/// How long a request that found no open file waits before it tries again.
const FILES_WAIT: Duration = Duration::from_millis(50);

/// How long past the pool's idle timeout requests may find no open file, none in flight,
/// before the run fails.
const FILES_GIVE_UP: Duration = Duration::from_secs(5);

/// Whether a run whose requests have found no open file for `starved` fails: once idle
/// connections would have left the pool (`idle_timeout`) and a little more, with none in
/// flight to free a file.
fn gives_up(starved: Duration, idle_timeout: Duration, in_flight: usize) -> bool {
    in_flight == 0 && starved > idle_timeout + FILES_GIVE_UP
}

/// Since when requests have found no open file, none getting through meanwhile.
#[derive(Default)]
struct Starving {
    on: AtomicBool,
    since: std::sync::Mutex<Option<Instant>>,
}

impl Starving {
    /// A request got a connection (or an answer): whatever starved is over. One relaxed
    /// load on the way of every request.
    fn through(&self) {
        if self.on.load(Ordering::Relaxed) {
            self.on.store(false, Ordering::Relaxed);
            *self.since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// A request found no open file at `now`: how long none has got through.
    fn refused(&self, now: Instant) -> Duration {
        self.on.store(true, Ordering::Relaxed);
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        now.saturating_duration_since(*since.get_or_insert(now))
    }
}

/// When a request left: the wall-clock time and, with `--redis`, the grant's instant on
/// Redis' clock (for the request log).
type Sent = Option<(SystemTime, Option<SystemTime>)>;

/// How late after its grant's instant a request may leave (half the rate's period, within
/// these bounds); a worker woken later asks for a new grant, at most `STALE_GRANTS` times.
const LATE_GRANT: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(5));
const STALE_GRANTS: u32 = 6;

/// How long a worker waits before it asks an unreachable Redis again: doubling up to this.
const REDIS_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// What a step of a task leads to.
enum RobotsStep {
    Allowed,
    Disallowed(Failure),
    /// robots.txt was fetched meanwhile; the task goes back to its queue.
    Fetched,
    /// Another task is fetching robots.txt; the task looks again later.
    Wait,
    Stopped,
}

impl Fetcher {
    pub fn new(
        config: Arc<Config>,
        limits: Arc<Limits>,
        scheduler: Scheduler,
        log: Option<RequestLog>,
        shared: Option<Arc<Shared>>,
    ) -> Result<Fetcher, Error> {
        let cookies = config
            .cookies
            .then(|| Arc::new(Cookies::new(&config.seed_cookies)));
        let client = build_client(&config, cookies.as_deref())?;
        let sensitive = config
            .headers
            .iter()
            .filter(|(name, _)| SENSITIVE.contains(name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let rules_window = if config.extract.iter().any(Extractor::needs_body) {
            let cap = config.max_body.unwrap_or(u64::MAX);
            usize::try_from(cap.min(RULES_WINDOW as u64)).unwrap_or(RULES_WINDOW)
        } else {
            0
        };
        let header_rules = config.extract.iter().any(|x| !x.needs_body());
        let robots = config.respect_robots.then(Robots::default);
        let allowances =
            (!config.ignore_ratelimit_headers).then(|| Allowances::new(config.timeout));
        Ok(Fetcher {
            client,
            config,
            limits,
            scheduler,
            sensitive,
            rules_window,
            header_rules,
            robots,
            log,
            allowances,
            shared,
            starving: Starving::default(),
            cookies,
        })
    }

    /// What the request log records of a request stamped `at`: its wall-clock time (on the
    /// one clock every limit judged it by), and with `--redis` its grant's instant (`None`
    /// without `--log-requests`).
    fn sent(&self, at: std::time::Instant, granted: Option<SystemTime>) -> Sent {
        self.log
            .as_ref()
            .map(|_| (crate::limits::wall_time(at), granted))
    }

    /// No request to `host` leaves for `wait` (a `Retry-After`, an announced limit): in this
    /// process, and with `--redis` in every process that shares the limits.
    fn cool_down(&self, host: &str, wait: Duration) {
        self.scheduler.cool_down(host, wait);
        if let Some(shared) = &self.shared {
            let (shared, host) = (shared.clone(), host.to_string());
            // Best effort: this process keeps the cool-down whatever Redis says.
            tokio::spawn(async move { shared.cool_down(&host, wait).await });
        }
    }

    /// With `--redis`: the grant for one request to `host`, waited for; returns its instant
    /// on Redis' clock once the request may leave (`None` without `--redis`). A host that
    /// must wait longer cools down here and the task goes back to its queue; a spent shared
    /// `--quota` pauses the run (or stops it, under `--on-quota stop`). While Redis cannot be
    /// reached, the worker asks again with a backoff and nothing is sent.
    async fn shared_grant(
        &self,
        host: &str,
        stop: &CancellationToken,
    ) -> Result<Option<SystemTime>, Next> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let interval = self.scheduler.host_period(host);
        let mut backoff = REDIS_BACKOFF.0;
        // How late after its grant a request may still leave: half the rate's period, within
        // bounds.
        let mut late_ok = self
            .config
            .rate
            .period()
            .map_or(LATE_GRANT.1, |p| (p / 2).clamp(LATE_GRANT.0, LATE_GRANT.1));
        let mut stale = 0;
        loop {
            let answer = tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(Next::Stopped),
                answer = shared.grant(host, interval) => answer,
            };
            if answer.is_ok() && backoff > REDIS_BACKOFF.0 {
                // Redis answers again.
                self.scheduler.notify(None);
            }
            match answer {
                Ok(Grant::At { at, granted, late }) => {
                    if shared.state_lost() && !self.config.quiet {
                        eprintln!(
                            "ratefetch: warning: the shared limits under --limit-key {} were \
                             gone from Redis (a restart without persistence, or a flush): \
                             their windows count again from now",
                            shared.key()
                        );
                    }
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => return Err(Next::Stopped),
                        _ = tokio::time::sleep_until(at) => {}
                    }
                    // Woken late (a busy machine, a stopped process), the request would land
                    // closer to the next grant, another process's perhaps, than the limits
                    // allow. The slot stays counted (the safe side); ask again, allowing a
                    // little more lateness each time so that a slow machine still sends.
                    // (A slow answer makes the grant that much older than `at` says.)
                    if Instant::now().saturating_duration_since(at) + late > late_ok
                        && stale < STALE_GRANTS
                    {
                        stale += 1;
                        late_ok *= 2;
                        continue;
                    }
                    return Ok(Some(granted));
                }
                Ok(Grant::Host(wait)) => {
                    self.scheduler.cool_down(host, wait);
                    return Err(Next::Requeue);
                }
                Ok(Grant::Run { wait, quota }) => {
                    let what =
                        quota.map_or_else(|| "--quota".to_string(), |q| format!("--quota {q}"));
                    let what = format!("{what} (shared in Redis)");
                    if self.config.on_quota == OnQuota::Stop {
                        self.scheduler
                            .stop_at_limit(what, Some(SystemTime::now() + wait));
                        return Err(Next::Stopped);
                    }
                    self.scheduler.pause(wait, what);
                    return Err(Next::Requeue);
                }
                Err(e @ (SharedError::Mismatch { .. } | SharedError::Refused(_))) => {
                    self.scheduler.fail_shared(e.to_string());
                    return Err(Next::Stopped);
                }
                Err(SharedError::Unreachable(why)) => {
                    self.scheduler.notify(Some(format!(
                        "waiting for Redis ({why}): nothing is sent until it answers"
                    )));
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => return Err(Next::Stopped),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(REDIS_BACKOFF.1);
                }
            }
        }
    }

    /// Logs a request sent at `sent` (with `--log-requests`).
    fn log(
        &self,
        sent: Sent,
        host: &str,
        index: Option<u64>,
        attempt: u32,
        step: Option<&Step>,
        announced: Option<&Announced>,
    ) {
        let (Some(log), Some((sent, granted))) = (&self.log, sent) else {
            return;
        };
        let (status, error) = match step {
            None => (None, Some("stopped")),
            Some(Step::Redirect(_, status)) => (Some(*status), None),
            Some(Step::Retryable { status, .. }) => (Some(*status), None),
            Some(Step::Done(head, body)) => {
                (Some(head.status), body.as_ref().map(|f| f.kind.as_str()))
            }
            Some(Step::Failed(f)) => (None, Some(f.kind.as_str())),
            // Not sent: `step` returns before logging it.
            Some(Step::OutOfFiles(_)) => return,
        };
        log.record(Entry {
            sent,
            granted,
            host: host.to_string(),
            index,
            attempt,
            status,
            error,
            ratelimit: announced.cloned(),
        });
    }

    /// Takes one step of the task in `ticket`: at most one request, for which its host's
    /// slot was given by the scheduler. Every request — first attempt, retry, redirect hop or
    /// robots.txt — takes the global permit and token (`Limits`) and counts in its host's
    /// pace (`Ticket::go`), so the rate promise counts them all.
    pub async fn step(&self, ticket: &mut Ticket, buf: &mut Vec<u8>, shutdown: &Shutdown) -> Next {
        let url = match ticket.task().next_url() {
            Ok(url) => url.clone(),
            Err(f) => {
                let f = f.clone();
                ticket.task_mut().fail(f);
                return Next::Done;
            }
        };
        // A URL that robots.txt disallows is not requested at all.
        if self.robots.is_some() {
            match self.robots_step(ticket, &url, shutdown).await {
                RobotsStep::Allowed => {}
                RobotsStep::Disallowed(f) => {
                    ticket.task_mut().fail(f);
                    return Next::Done;
                }
                RobotsStep::Fetched => return Next::Requeue,
                RobotsStep::Wait => return Next::RetryAt(Instant::now() + ROBOTS_WAIT),
                RobotsStep::Stopped => return Next::Stopped,
            }
        }
        // The server's announced allowance first: a host with nothing left pauses here,
        // taking no token.
        let host = url.host_str().unwrap_or("");
        if let Some(allowances) = &self.allowances {
            if let Err(wait) = allowances.check(host, Instant::now()) {
                return self.wait_for_allowance(host, wait);
            }
        }
        ticket.wait_due().await;
        let pass = tokio::select! {
            biased;
            _ = shutdown.stop.cancelled() => return Next::Stopped,
            pass = self.limits.acquire() => pass,
        };
        let granted = match self.shared_grant(host, &shutdown.stop).await {
            Ok(granted) => granted,
            Err(next) => return next,
        };
        let at = pass.stamp();
        // The request's place in the allowance is taken as it leaves, so that what was
        // answered while it waited for the rate counts (a token lost to a refusal here can
        // only slow the run).
        let mut taken = match &self.allowances {
            Some(allowances) => match allowances.take(host, Instant::from_std(at)) {
                Ok(seq) => Some(Taken {
                    allowances,
                    host,
                    seq,
                }),
                Err(wait) => return self.wait_for_allowance(host, wait),
            },
            None => None,
        };
        if !ticket.go(at) {
            // The host began to cool down while we waited: the token goes unused (a lost
            // token can only slow the run, never break the promise).
            return Next::Requeue;
        }
        let sent = Instant::from_std(at);
        let sent_wall = self.sent(at, granted);
        let task = ticket.task_mut();
        if task.first_sent.is_none() {
            task.first_sent = Some(sent);
            task.outcome.started_at = Some(SystemTime::now());
        }
        task.outcome.requests += 1;
        let new_attempt = task.hop.is_none();
        let hop = match &task.hop {
            Some(hop) => hop.clone(),
            None => {
                // A new attempt: its result replaces the last one's.
                task.outcome.attempts += 1;
                task.outcome.error_kind = None;
                task.outcome.error = None;
                let hop = Hop {
                    url: url.clone(),
                    method: self.config.method.clone(),
                    with_body: true,
                    redirects: 0,
                };
                task.hop = Some(hop.clone());
                hop
            }
        };
        let may_retry = task.outcome.attempts <= self.config.retries;
        let own_host = task.job.target.as_ref().ok().and_then(Url::host_str) == hop.url.host_str();
        if let (true, Some(cookies)) = (own_host, &self.cookies) {
            cookies.seed(&hop.url);
        }
        let index = task.job.index;
        // With --save-bodies, the body on its way to disk; dropped (deleted) unless the row
        // is final with it.
        let mut saving = None;
        let request = self.request(&hop, own_host, buf, &mut saving, may_retry);
        let deadline = sent
            .checked_add(self.config.timeout)
            .unwrap_or_else(far_future);
        let attempt = task.outcome.attempts;
        let step = tokio::select! {
            biased;
            _ = shutdown.abort.cancelled() => {
                // Sent all the same: it counts.
                self.log(sent_wall, hop.url.host_str().unwrap_or(""), Some(index), attempt, None, None);
                return Next::Stopped;
            }
            step = tokio::time::timeout_at(deadline, request) => step,
        };
        drop(pass);
        let (step, announced) = step.unwrap_or_else(|_| {
            (
                Step::Failed(Failure::new(
                    ErrorKind::Timeout,
                    format!(
                        "no complete response within {}",
                        humantime::format_duration(self.config.timeout)
                    ),
                )),
                None,
            )
        });
        if let Step::OutOfFiles(why) = &step {
            return self.out_of_files(ticket, new_attempt, why);
        }
        let mut announced = announced;
        if let (
            Some(a),
            Step::Retryable {
                retry_after: Some(ra),
                ..
            },
        ) = (&mut announced, &step)
        {
            // A refusal naming two resets (the limit's and Retry-After): the earlier wins.
            a.reset = a.reset.min(*ra);
        }
        self.starving.through();
        if let Some(taken) = taken.take() {
            let refused = step.status().is_some_and(|status| {
                status == 429 || announce::explains_refusal(status, announced.as_ref())
            });
            taken.answered(announced.as_ref(), refused);
        }
        let host = hop.url.host_str().unwrap_or("");
        let said = announced.as_ref();
        self.log(sent_wall, host, Some(index), attempt, Some(&step), said);
        if let Some(next) = self.explained_refusal(ticket, host, &step, announced.as_ref()) {
            return next;
        }
        match retry::decide(&self.config, step, may_retry) {
            Decision::Redirect(next, status) => {
                let task = ticket.task_mut();
                match retry::follow(&hop, next, status, self.config.max_redirects) {
                    Ok(next) => {
                        task.hop = Some(next);
                        Next::Requeue
                    }
                    Err(f) => {
                        task.fail(f);
                        Next::Done
                    }
                }
            }
            Decision::Finish {
                head,
                failure,
                note,
            } => {
                let task = ticket.task_mut();
                task.outcome.set_head(head);
                if let Some(f) = failure {
                    task.fail(f);
                }
                if note.is_some() {
                    task.outcome.error = note;
                }
                if let (Some(dir), Some(saving)) = (&self.config.save_bodies, saving.take()) {
                    save_body(dir, index, &mut task.outcome, saving).await;
                }
                Next::Done
            }
            Decision::Fail(f) => {
                ticket.task_mut().fail(f);
                Next::Done
            }
            Decision::Retry(f) => {
                let task = ticket.task_mut();
                task.fail(f);
                task.hop = None;
                let wait = self.backoff(task.outcome.attempts);
                Next::RetryAt(Instant::now() + wait)
            }
            Decision::CoolDown(wait) => {
                // The whole host cools down, not only this job; the job waits in its queue.
                self.cool_down(host, wait);
                ticket.task_mut().hop = None;
                Next::Requeue
            }
            Decision::Backoff => {
                let task = ticket.task_mut();
                task.hop = None;
                let wait = self.backoff(task.outcome.attempts);
                Next::RetryAt(Instant::now() + wait)
            }
        }
    }

    /// A request that found no open file to connect with: it did not leave, so it spends no
    /// attempt, and the task tries again shortly, from the scheduler. Only when none has
    /// got through for longer than idle connections are kept, with no request in flight
    /// that would free a file, does the run stop, failing.
    fn out_of_files(&self, ticket: &mut Ticket, new_attempt: bool, why: &str) -> Next {
        let task = ticket.task_mut();
        task.outcome.requests -= 1;
        if new_attempt {
            task.outcome.attempts -= 1;
            task.hop = None;
        }
        if self.starved(why) {
            return Next::Stopped;
        }
        Next::RetryAt(Instant::now() + FILES_WAIT)
    }

    /// Counts a request that found no open file; true when the run must stop for it (none
    /// got through for longer than idle connections are kept, with nothing in flight that
    /// would free one), which this says to the scheduler.
    fn starved(&self, why: &str) -> bool {
        let starved = self.starving.refused(Instant::now());
        if !gives_up(starved, self.config.idle_timeout, self.limits.in_flight()) {
            return false;
        }
        self.scheduler.fail_files(format!(
            "{why} for {}, with no request in flight that would free one \
             (raise the limit, ulimit -n, or lower -c)",
            humantime::format_duration(Duration::from_secs(starved.as_secs()))
        ));
        true
    }

    /// A request that the host's announced allowance holds back: the whole host pauses (or
    /// spreads what is left), and the task waits in its queue; under `--on-quota stop` a
    /// spent allowance stops the run.
    fn wait_for_allowance(&self, host: &str, wait: Wait) -> Next {
        let now = Instant::now();
        match wait {
            Wait::Spent { reset, .. }
                if self.config.on_quota == OnQuota::Stop
                    && reset.saturating_duration_since(now) > STOP_AFTER =>
            {
                let frees_at = SystemTime::now() + reset.saturating_duration_since(now);
                self.scheduler
                    .stop_at_limit(format!("the limit {host} announced"), Some(frees_at));
                Next::Stopped
            }
            Wait::Spent { until, .. } => {
                let wait = until.saturating_duration_since(now);
                self.cool_down(host, wait);
                self.scheduler.note_reset(host, wait);
                Next::Requeue
            }
            Wait::Spread { until } => {
                self.cool_down(host, until.saturating_duration_since(now));
                Next::Requeue
            }
        }
    }

    /// A 429, or GitHub's 403, that the server's announced limit explains (nothing
    /// remaining): the host pauses until the reset (as the allowance estimates it; a
    /// `Retry-After` earlier than the announced reset wins) and the job goes again without
    /// spending an attempt. `None` for any other response.
    fn explained_refusal(
        &self,
        ticket: &mut Ticket,
        host: &str,
        step: &Step,
        announced: Option<&Announced>,
    ) -> Option<Next> {
        let (status, retry_after) = match step {
            Step::Retryable {
                status,
                retry_after,
                ..
            } => (*status, *retry_after),
            Step::Done(head, _) => (head.status, None),
            _ => return None,
        };
        let a = announced?;
        if !announce::explains_refusal(status, Some(a)) || ticket.task().refused >= FREE_REFUSALS {
            return None;
        }
        // A Retry-After too long to wait for ends the row as usual.
        if retry_after.is_some_and(|ra| ra > self.config.max_retry_after) {
            return None;
        }
        if retry_after.is_none() && self.config.on_quota == OnQuota::Stop && a.reset > STOP_AFTER {
            let frees_at = SystemTime::now() + a.reset;
            self.scheduler
                .stop_at_limit(format!("the limit {host} announced"), Some(frees_at));
            return Some(Next::Stopped);
        }
        // The allowance's estimate of the reset (which this answer's reset, or its
        // Retry-After when earlier, has bounded already).
        let now = Instant::now();
        let wait = self
            .allowances
            .as_ref()
            .and_then(|allowances| allowances.spent_until(host, now))
            .map(|until| until.saturating_duration_since(now))
            .or(retry_after)
            .unwrap_or(a.reset + crate::limits::allowance::AFTER_RESET);
        self.cool_down(host, wait);
        self.scheduler.note_reset(host, wait);
        let task = ticket.task_mut();
        task.refused += 1;
        task.outcome.attempts -= 1;
        task.hop = None;
        Some(Next::Requeue)
    }

    /// With `--respect-robots`: whether robots.txt lets `url` be fetched. While an origin's
    /// robots.txt is not known, the first task of that origin gives its host's slot back,
    /// fetches it (in slots of its own) and goes back to its queue; the others look again a
    /// little later, from the scheduler, holding no worker.
    async fn robots_step(&self, ticket: &mut Ticket, url: &Url, shutdown: &Shutdown) -> RobotsStep {
        let robots = self.robots.as_ref().expect("called with --respect-robots");
        let origin = robots.origin(url);
        let Some(rules) = origin.rules.get().cloned() else {
            ticket.release_host();
            if origin
                .fetching
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                return RobotsStep::Wait;
            }
            // If this fetch ends without rules (a panic, a stop), another task may fetch.
            let _fetching = robots::Fetching(&origin);
            return match self.fetch_robots(url, shutdown).await {
                Some(rules) => {
                    let _ = origin.rules.set(rules);
                    RobotsStep::Fetched
                }
                None => RobotsStep::Stopped,
            };
        };
        if let Some(delay) = rules.delay() {
            self.scheduler
                .slow_host(url.host_str().unwrap_or(""), delay);
        }
        match rules.check(url) {
            Ok(()) => RobotsStep::Allowed,
            Err(why) => RobotsStep::Disallowed(Failure::new(ErrorKind::RobotsDisallowed, why)),
        }
    }

    /// Fetches the robots.txt of `page`'s origin, each request in a slot of its host and
    /// through the global limits, following up to five redirects (RFC 9309 §2.3.1.2).
    async fn fetch_robots(&self, page: &Url, shutdown: &Shutdown) -> Option<Arc<Rules>> {
        let mut target = page
            .join("/robots.txt")
            .expect("an http(s) URL joins a path");
        let mut answer: Result<(u16, Vec<u8>), String> = Ok((404, Vec::new()));
        for _ in 0..=5 {
            let host = target.host_str().unwrap_or("").to_string();
            let got = loop {
                let mut slot = self.scheduler.slot(&host, &shutdown.stop).await?;
                slot.wait_due().await;
                let pass = tokio::select! {
                    biased;
                    _ = shutdown.stop.cancelled() => return None,
                    pass = self.limits.acquire() => pass,
                };
                let granted = match self.shared_grant(&host, &shutdown.stop).await {
                    Ok(granted) => granted,
                    Err(Next::Stopped) => return None,
                    // The host or the run waits: a new slot waits for it.
                    Err(_) => continue,
                };
                let at = pass.stamp();
                if !slot.go(at) {
                    continue;
                }
                let sent_wall = self.sent(at, granted);
                let deadline = Instant::now()
                    .checked_add(self.config.timeout)
                    .unwrap_or_else(far_future);
                let got = tokio::select! {
                    biased;
                    _ = shutdown.abort.cancelled() => {
                        self.log(sent_wall, &host, None, 1, None, None);
                        return None;
                    }
                    got = tokio::time::timeout_at(deadline, self.get_robots(&target)) => got,
                };
                drop(pass);
                // No open file to connect with: not sent, and not the host's fault (a
                // robots.txt that cannot be reached would disallow the host). Again shortly.
                if let Ok(Err(RobotsError::OutOfFiles(why))) = &got {
                    if self.starved(why) {
                        return None;
                    }
                    drop(slot);
                    tokio::time::sleep(FILES_WAIT).await;
                    continue;
                }
                self.starving.through();
                if self.log.is_some() {
                    let step = match &got {
                        Err(_) => Step::Failed(Failure::new(ErrorKind::Timeout, String::new())),
                        Ok(Err(_)) => Step::Failed(Failure::new(ErrorKind::Other, String::new())),
                        Ok(Ok(Ok((status, _)))) => Step::Done(
                            Head {
                                status: *status,
                                ..Head::default()
                            },
                            None,
                        ),
                        Ok(Ok(Err(_))) => Step::Redirect(target.clone(), 301),
                    };
                    self.log(sent_wall, &host, None, 1, Some(&step), None);
                }
                break got;
            };
            match got {
                Err(_) => answer = Err("timed out".to_string()),
                // (Out of files is waited for above.)
                Ok(Err(RobotsError::Failed(why) | RobotsError::OutOfFiles(why))) => {
                    answer = Err(why)
                }
                Ok(Ok(Ok(reply))) => answer = Ok(reply),
                Ok(Ok(Err(next))) if matches!(next.scheme(), "http" | "https") => {
                    target = next;
                    continue;
                }
                // A redirect elsewhere: robots.txt is unavailable, which allows everything
                // (RFC 9309 §2.3.1.3).
                Ok(Ok(Err(_))) => answer = Ok((404, Vec::new())),
            }
            break;
        }
        let agent = robots::agent_token(user_agent(&self.config));
        let reply = answer.as_ref().map(|(s, b)| (*s, b.as_slice()));
        let rules = Rules::from_response(agent, reply.map_err(Clone::clone));
        // Before any page of the host goes: its first page waits the delay after robots.txt.
        if let Some(delay) = rules.delay() {
            self.scheduler
                .slow_host(page.host_str().unwrap_or(""), delay);
        }
        Some(Arc::new(rules))
    }

    /// One robots.txt request: its status and (capped) body, or where it redirects.
    async fn get_robots(&self, url: &Url) -> Result<Result<(u16, Vec<u8>), Url>, RobotsError> {
        let response = self.client.get(url.clone()).send().await.map_err(|e| {
            out_of_files(&e).map_or_else(
                || RobotsError::Failed(classify(e).message),
                RobotsError::OutOfFiles,
            )
        })?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            // Without a usable Location, robots.txt is unavailable (allows everything).
            let unavailable = Ok(Ok((404, Vec::new())));
            return match location(&response) {
                Some(next) => Ok(Err(next)),
                None => unavailable,
            };
        }
        let mut body = Vec::new();
        let mut bytes = 0;
        let cap = robots::MAX_ROBOTS;
        match read_capped(response, &mut body, None, cap, cap as u64, &mut bytes).await {
            BodyEnd::Complete => {}
            BodyEnd::Capped => {
                // Cut at the last whole line: half a rule could mean another rule.
                let end = memchr::memrchr(b'\n', &body).map_or(0, |i| i + 1);
                body.truncate(end);
            }
            BodyEnd::Failed(e) => return Err(RobotsError::Failed(classify(e).message)),
        }
        Ok(Ok((status, body)))
    }

    /// The wait before retry `n` (1-based): full jitter under a doubling cap.
    fn backoff(&self, n: u32) -> Duration {
        retry::backoff(
            self.config.backoff,
            n,
            self.scheduler.jitter(),
            fastrand::f64(),
        )
    }

    /// Sends one request and reads its response.
    /// Sends one request and reads its response, with the limit the response announces (when
    /// announced limits are followed).
    async fn request(
        &self,
        hop: &Hop,
        own_host: bool,
        buf: &mut Vec<u8>,
        saving: &mut Option<Saving>,
        may_retry: bool,
    ) -> (Step, Option<Announced>) {
        let mut announced = None;
        let step = self
            .request_step(hop, own_host, buf, saving, may_retry, &mut announced)
            .await;
        (step, announced)
    }

    async fn request_step(
        &self,
        hop: &Hop,
        own_host: bool,
        buf: &mut Vec<u8>,
        saving: &mut Option<Saving>,
        may_retry: bool,
        announced: &mut Option<Announced>,
    ) -> Step {
        let mut request = self.client.request(hop.method.clone(), hop.url.clone());
        if hop.with_body {
            if let Some(body) = &self.config.body {
                request = request.body(body.clone());
            }
        }
        if own_host {
            for (name, value) in &self.sensitive {
                request = request.header(name, value);
            }
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return match out_of_files(&e) {
                    Some(why) => Step::OutOfFiles(why),
                    None => Step::Failed(classify(e)),
                }
            }
        };
        if self.allowances.is_some() {
            *announced = announce::parse(response.headers(), SystemTime::now());
        }
        let status = response.status();
        // --max-redirects 0 reports the 3xx itself, as curl does without -L; so does a
        // redirect without a usable Location.
        if self.config.max_redirects > 0 && matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            if let Some(next) = location(&response) {
                drain(response).await;
                return Step::Redirect(next, status.as_u16());
            }
        }
        let mut head = Head {
            status: status.as_u16(),
            final_url: response.url().as_str().to_string(),
            content_type: header_text(response.headers(), CONTENT_TYPE),
            bytes: 0,
            title: None,
            extracted: Vec::new(),
        };
        if may_retry && self.config.retry_status.contains(&head.status) {
            let retry_after = retry_after(status, response.headers(), SystemTime::now());
            drain(response).await;
            return Step::Retryable {
                status: head.status,
                retry_after,
                head,
            };
        }
        let html = head.content_type.as_deref().is_some_and(extract::is_html);
        // In memory: the body (within the cap, and within RULES_WINDOW) when rules read it;
        // else the head of an HTML page, for its title; else nothing. Saved bodies go to
        // disk as they come.
        let window = if html {
            self.rules_window.max(TITLE_WINDOW)
        } else {
            self.rules_window
        };
        let headers = self.header_rules.then(|| response.headers().clone());
        if let Some(dir) = &self.config.save_bodies {
            *saving = Some(Saving::start(dir));
        }
        let body_error = self
            .read_body(response, buf, saving.as_mut(), window, &mut head.bytes)
            .await;
        // Titles and extracted text are decoded as a browser would decode the page.
        let encoding = if html || !self.config.extract.is_empty() {
            encoding::sniff(head.content_type.as_deref(), buf, html)
        } else {
            encoding_rs::UTF_8
        };
        if html {
            head.title = extract::title(&buf[..buf.len().min(TITLE_WINDOW)], encoding);
        }
        if !self.config.extract.is_empty() {
            // Parsing a large page takes CPU time: off the runtime's threads, so that no
            // worker that holds a fresh token waits behind it.
            let config = self.config.clone();
            let body = std::mem::take(buf);
            let (extracted, body) = tokio::task::spawn_blocking(move || {
                let headers = headers.unwrap_or_default();
                let values = extract::apply(
                    &config.extract,
                    config.extract_all,
                    &headers,
                    &body,
                    encoding,
                );
                (values, body)
            })
            .await
            .expect("extraction does not panic");
            head.extracted = extracted;
            *buf = body;
        }
        Step::Done(head, body_error)
    }

    /// Streams the body under `--max-body`, keeping its first `window` bytes in `buf`.
    async fn read_body(
        &self,
        response: Response,
        buf: &mut Vec<u8>,
        saving: Option<&mut Saving>,
        window: usize,
        bytes: &mut u64,
    ) -> Option<Failure> {
        let cap = self.config.max_body.unwrap_or(u64::MAX);
        match read_capped(response, buf, saving, window, cap, bytes).await {
            BodyEnd::Complete => None,
            BodyEnd::Capped => Some(Failure::new(
                ErrorKind::BodyTooLarge,
                format!("body larger than --max-body {cap} bytes; read up to the cap"),
            )),
            BodyEnd::Failed(e) => Some(classify(e)),
        }
    }
}

/// Reads and drops up to `DRAIN_LIMIT` bytes of a body that will not be used, so that a
/// small one leaves its connection reusable; a larger one is dropped (and its connection
/// closed) instead.
async fn drain(mut response: Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > DRAIN_LIMIT {
            return;
        }
    }
}

/// How a capped body read ended.
enum BodyEnd {
    Complete,
    /// More than the cap was sent; `bytes` is the cap.
    Capped,
    Failed(reqwest::Error),
}

/// Streams a body, counting decompressed bytes into `bytes` and stopping once more than
/// `cap` came. Keeps its first `window` bytes in `buf` (cleared first) and hands every
/// byte up to the cap to `saving`. The one body reader of pages and robots.txt alike.
async fn read_capped(
    mut response: Response,
    buf: &mut Vec<u8>,
    mut saving: Option<&mut Saving>,
    window: usize,
    cap: u64,
    bytes: &mut u64,
) -> BodyEnd {
    buf.clear();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() < window {
                    let room = window - buf.len();
                    buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                let len = chunk.len() as u64;
                let kept = len.min(cap - *bytes);
                if let Some(saving) = saving.as_deref_mut() {
                    // `kept` ≤ `len`, a usize.
                    saving.write(chunk.slice(..kept as usize)).await;
                }
                if kept < len {
                    *bytes = cap;
                    return BodyEnd::Capped;
                }
                *bytes += len;
            }
            Ok(None) => return BodyEnd::Complete,
            Err(e) => return BodyEnd::Failed(e),
        }
    }
}

/// Completes a body saved for `--save-bodies` as `DIR/<index>.<ext>`, and puts its hash (and
/// why it could not be saved, if it could not) in the row.
async fn save_body(dir: &std::path::Path, index: u64, outcome: &mut Outcome, saving: Saving) {
    let ext = body_extension(outcome.content_type.as_deref());
    let (sha, failed) = saving.finish(dir.join(format!("{index}.{ext}"))).await;
    outcome.body_sha256 = Some(sha);
    if let Some(why) = failed {
        if outcome.error_kind.is_none() {
            outcome.error_kind = Some(ErrorKind::Other);
            outcome.error = Some(why);
        }
    }
}

/// Where a redirect response points, resolved against its URL; `None` without a usable
/// `Location`.
fn location(response: &Response) -> Option<Url> {
    response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| response.url().join(l).ok())
}

/// The User-Agent a run sends: an explicit `-H 'User-Agent: …'` wins over `-A` and its
/// default. Pages and robots.txt matching both use it.
fn user_agent(config: &Config) -> &str {
    config
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&config.user_agent)
}

/// A deadline that never comes, for timeouts too large for `Instant`.
/// A request's place in its host's announced allowance, given back (as not answered) if the
/// request ends without a response being read (a stop, a refused `go`).
struct Taken<'a> {
    allowances: &'a Allowances,
    host: &'a str,
    seq: u64,
}

impl Taken<'_> {
    /// The request was answered, saying `announced` (`refused`: turned away).
    fn answered(self, announced: Option<&Announced>, refused: bool) {
        let answer = Answer { announced, refused };
        self.allowances
            .done(self.host, self.seq, Some(answer), Instant::now());
        std::mem::forget(self);
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.allowances
            .done(self.host, self.seq, None, Instant::now());
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// The response's parts of a row.
trait SetHead {
    fn set_head(&mut self, head: Head);
}

impl SetHead for Outcome {
    fn set_head(&mut self, head: Head) {
        self.status = Some(head.status);
        self.final_url = Some(head.final_url);
        self.content_type = head.content_type;
        self.bytes = head.bytes;
        self.title = head.title;
        self.extracted = head.extracted;
    }
}

/// The file extension for a saved body, from its content type.
pub fn body_extension(content_type: Option<&str>) -> &'static str {
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "text/html" | "application/xhtml+xml" => "html",
        "application/json" | "text/json" => "json",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "text/css" => "css",
        "text/javascript" | "application/javascript" => "js",
        "application/xml" | "text/xml" => "xml",
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        m if m.ends_with("+json") => "json",
        m if m.ends_with("+xml") => "xml",
        _ => "bin",
    }
}

fn header_text(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The delay a `Retry-After` header asks for (RFC 9110 §10.2.3): delay-seconds or an
/// HTTP-date. Only read on 429 and 503 (RFC 6585 §4, RFC 9110 §15.6.4) and on 3xx, where the
/// RFC gives it a meaning; a date in the past means no delay.
pub fn retry_after(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if !(status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::SERVICE_UNAVAILABLE
        || status.is_redirection())
    {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Why a robots.txt request got no answer.
enum RobotsError {
    /// No open file to connect with: a local condition, waited out.
    OutOfFiles(String),
    /// The host's failure, one line.
    Failed(String),
}

/// Why a request could not leave, if it was for want of open files (`EMFILE`, or the
/// system's `ENFILE`): a local condition, not the server's.
fn out_of_files(err: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                return Some(io.to_string());
            }
        }
        source = e.source();
    }
    None
}

/// Classifies a reqwest error into a row's kind and one-line message.
pub fn classify(err: reqwest::Error) -> Failure {
    let kind = kind_of(&err);
    let err = err.without_url();
    Failure::new(kind, error_text(&err))
}

fn kind_of(err: &reqwest::Error) -> ErrorKind {
    let text = error_text(err).to_ascii_lowercase();
    if err.is_connect() {
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return ErrorKind::Dns;
        }
        if [
            "tls",
            "certificate",
            "handshake",
            "corrupt message",
            "alert",
        ]
        .iter()
        .any(|w| text.contains(w))
        {
            return ErrorKind::Tls;
        }
        return ErrorKind::Connect;
    }
    if err.is_timeout() {
        return ErrorKind::Timeout;
    }
    if err.is_body() || err.is_decode() {
        return ErrorKind::Body;
    }
    ErrorKind::Other
}

/// The error and its sources on one line, without repeating a source that the outer
/// message already quotes.
pub fn error_text(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = e.source();
    }
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(retry).unwrap());
        h
    }

    #[test]
    fn retry_after_delay_seconds() {
        let now = SystemTime::now();
        let got = retry_after(StatusCode::TOO_MANY_REQUESTS, &headers("120"), now);
        assert_eq!(got, Some(Duration::from_secs(120)));
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let got = retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers("Sun, 06 Nov 1994 08:50:07 GMT"),
            now,
        );
        assert_eq!(got, Some(Duration::from_secs(30)));
        let past = retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers("Sun, 06 Nov 1994 08:00:00 GMT"),
            now,
        );
        assert_eq!(past, Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_ignored_where_it_has_no_meaning_or_is_garbage() {
        let now = SystemTime::now();
        assert_eq!(retry_after(StatusCode::OK, &headers("5"), now), None);
        assert_eq!(
            retry_after(StatusCode::BAD_GATEWAY, &headers("5"), now),
            None
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &headers("soon"), now),
            None
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), now),
            None
        );
    }

    #[test]
    fn running_out_of_files_fails_the_run_only_when_it_lasts_with_nothing_in_flight() {
        let starving = Starving::default();
        let t0 = Instant::now();
        assert_eq!(starving.refused(t0), Duration::ZERO);
        let later = t0 + Duration::from_secs(11);
        let starved = starving.refused(later);
        assert_eq!(starved, Duration::from_secs(11));
        let idle = Duration::from_secs(5);
        assert!(gives_up(starved, idle, 0));
        assert!(
            !gives_up(starved, idle, 1),
            "a request in flight may free a file"
        );
        assert!(!gives_up(Duration::from_secs(9), idle, 0));
        // One request through, and the count starts over.
        starving.through();
        assert_eq!(starving.refused(later), Duration::ZERO);
    }

    #[test]
    fn error_text_is_one_line_without_repeats() {
        let inner = std::io::Error::other("line one\nline two");
        let text = error_text(&inner);
        assert_eq!(text, "line one line two");
    }
}
