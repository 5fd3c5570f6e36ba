//! Shared limits (`--redis URL`, `--limit-key NAME`): the run's rate-type limits kept in
//! Redis, so that any number of processes, on any machines, that name the same Redis and key
//! obey them together.
//!
//! - **One script per grant.** Before a request leaves, its worker runs one Lua script
//!   (`GRANT`, by EVALSHA) that checks, with Redis' own clock (`TIME`, not the clients'
//!   clocks, which drift), the global `--rate`/`--burst` (GCRA), every `--quota` (an exact
//!   sliding count), and the host's limits: its pace (`--per-host-rate`, a robots.txt
//!   Crawl-delay), its `--per-host-quota`s and its cool-down (`Retry-After`, a limit the
//!   server announced). It answers when the request may leave and counts it there in every
//!   limit at once; the worker sleeps until then and sends. No polling loop.
//! - **Waits that would hold a worker go back to the scheduler.** A grant more than `HOLD`
//!   away is not taken: a host that must wait cools down locally until its slot (its jobs
//!   wait in its queue, holding no worker), and a spent `--quota` pauses the whole run until
//!   its next slot. Only the global rate's wait stays in the worker, as it does for the local
//!   token: it is bounded by the workers of all processes, each holding at most one grant.
//! - **Reservations count.** A grant may lie a little in the future. A window check counts
//!   every grant after `t − W` (later ones included), so a request placed before a reserved
//!   one can never make a window hold too many; this only ever holds a request back.
//! - **Keys.** Every key of one `--limit-key NAME` carries the hash tag `{NAME}`, so all of
//!   them live in one Redis Cluster slot and one script may touch them. Each expires when
//!   nothing in it can matter any more (its window, its pace or its cool-down is over).
//! - **The limits are stored with the key** (`{NAME}:limits`): a process whose limits differ
//!   is refused (`SharedError::Mismatch`), not silently mixed in.
//! - **Fail closed.** Without a grant nothing is sent. A grant that fails (Redis went away)
//!   is asked again with a backoff by the caller (`fetch`); the connection manager
//!   reconnects. A grant whose answer was lost counted a request that was not sent: the safe
//!   side.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::time::Instant;

use crate::config::{Config, OnQuota};
use crate::error::{Error, UsageError};
use crate::limits::gcra::Pace;
use crate::limits::set::LimitSet;
use crate::units::Quota;

/// A grant at most this far away is waited for in the worker; a later one sends the job back
/// to the scheduler until its slot.
pub const HOLD: Duration = Duration::from_millis(20);

/// How long a command may take before the connection counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The grant: checks every limit at once with Redis' clock, and counts the request in each
/// when it is granted. All times are microseconds since the epoch on Redis' clock.
///
/// KEYS: limits, rate, host (its last grant), cool (its cool-down), the `--quota`s, the
/// host's `--per-host-quota`s.
/// ARGV: limits text, hold, rate period, rate tolerance ((burst − 1)·period), host interval,
/// stop at a spent quota (1/0), a unique member, the limits key's lifetime (ms), the number
/// of quotas, of host quotas, then (limit, window) for each quota and host quota.
///
/// Answers `{0, wait, at, fresh}` granted (`fresh`: the limits key was gone, the state was
/// lost or is new), `{1, wait}` the host must wait, `{2, wait, quota}` the run must wait
/// (the 1-based quota that binds), `{-1}` the key holds other limits.
///
/// Its arithmetic is its own, since it runs in Redis; its parameters come from the run's
/// `LimitSet` (`ScriptLimits`), and a test runs it on a real Redis against the Rust model
/// (`limits::gcra`, `limits::window::Exact`) on the same sequences, answer by answer.
const GRANT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local function int(x) return string.format('%d', x) end
local fresh = 0
local stored = redis.call('GET', KEYS[1])
if not stored then
  fresh = 1
elseif stored ~= ARGV[1] then
  return {-1}
end
local hold = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tau = tonumber(ARGV[4])
local interval = tonumber(ARGV[5])
local stop = ARGV[6] == '1'
local nq = tonumber(ARGV[9])
local nh = tonumber(ARGV[10])
-- The earliest instant from now at which a window of n per w admits one more request:
-- every grant after t - w counts, reserved ones too.
local function free_at(key, n, w)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - w))
  local count = redis.call('ZCARD', key)
  if count < n then return now end
  local e = redis.call('ZRANGE', key, int(count - n), int(count - n), 'WITHSCORES')
  return math.max(now, tonumber(e[2]) + w)
end
local host_at = now
if interval > 0 then
  local last = redis.call('GET', KEYS[3])
  if last then host_at = math.max(host_at, tonumber(last) + interval) end
end
local cool = redis.call('GET', KEYS[4])
if cool then host_at = math.max(host_at, tonumber(cool)) end
for i = 1, nh do
  local a = 11 + 2 * (nq + i - 1)
  host_at = math.max(host_at, free_at(KEYS[4 + nq + i], tonumber(ARGV[a]), tonumber(ARGV[a + 1])))
end
if host_at > now + hold then return {1, host_at - now} end
local run_at, binds = now, 0
for i = 1, nq do
  local a = 11 + 2 * (i - 1)
  local t = free_at(KEYS[4 + i], tonumber(ARGV[a]), tonumber(ARGV[a + 1]))
  if t > run_at then run_at, binds = t, i end
end
if run_at > now + hold or (stop and run_at > now) then return {2, run_at - now, binds} end
local at = math.max(host_at, run_at)
local tat = now
if period > 0 then
  local v = redis.call('GET', KEYS[2])
  if v then tat = math.max(tat, tonumber(v)) end
  at = math.max(at, tat - tau)
  local next_tat = math.max(tat, at) + period
  redis.call('SET', KEYS[2], int(next_tat), 'PX', int(math.floor((next_tat - now) / 1000) + 1000))
end
if interval > 0 then
  redis.call('SET', KEYS[3], int(at), 'PX', int(math.floor((at + interval - now) / 1000) + 1000))
end
for i = 1, nq + nh do
  local a = 11 + 2 * (i - 1)
  redis.call('ZADD', KEYS[4 + i], int(at), ARGV[7])
  redis.call('PEXPIRE', KEYS[4 + i], int(math.floor((at + tonumber(ARGV[a + 1]) - now) / 1000) + 1000))
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[8])
return {0, at - now, at, fresh}
";

/// A cool-down of one host, for every process: no grant for it before `TIME + ARGV[1]` µs.
/// Only ever extends one.
const COOL: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local wait = tonumber(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if (not cur) or tonumber(cur) < now + wait then
  redis.call('SET', KEYS[1], string.format('%d', now + wait), 'PX',
    string.format('%d', math.floor(wait / 1000) + 1000))
end
return 0
";

/// The answer to a grant.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// Send at `at`; `granted` is that instant on Redis' clock (for the request log).
    /// `late` is the answer's round trip: the grant's instant may lie that much before `at`
    /// (a slow answer is a stale grant).
    At {
        at: Instant,
        granted: SystemTime,
        late: Duration,
    },
    /// The host may not send for this long (its pace, quota or cool-down, shared).
    Host(Duration),
    /// Nothing of the run may leave for this long: `quota` is spent (shared).
    Run {
        wait: Duration,
        quota: Option<Quota>,
    },
}

/// Why a grant could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SharedError {
    /// Redis did not answer (or is busy loading): ask again later.
    #[error("{0}")]
    Unreachable(String),
    /// Redis answered with an error that waiting does not mend (a cluster redirect, a
    /// read-only replica, a permission, a key of another type).
    #[error("{0}")]
    Refused(String),
    /// The key holds other limits now (it expired and another run took it).
    #[error("the limits under --limit-key {key:?} changed to {stored}")]
    Mismatch { key: String, stored: String },
}

/// The shared limits of one run. Shared by the workers behind an `Arc`.
pub struct Shared {
    conn: ConnectionManager,
    grant: Script,
    cool: Script,
    /// `{NAME}`: the hash tag every key starts with.
    prefix: String,
    key: String,
    limits: String,
    /// The keys that do not depend on the host: limits, rate, the quotas.
    limits_key: String,
    rate_key: String,
    quota_keys: Vec<String>,
    /// The limits as the script takes them.
    script: ScriptLimits,
    /// The `--quota`s as given (named in `Grant::Run`).
    quotas: Vec<Quota>,
    stop_at_quota: bool,
    /// What is the same in every grant: the window arguments, the limits key's lifetime.
    windows: Vec<u64>,
    limits_ttl_ms: u64,
    /// Makes each grant's member unique: this process, and a count.
    id: String,
    seq: AtomicU64,
    /// Set once the state was found lost (warned once).
    forgot: AtomicBool,
}

/// A URL fit for messages: its password, if any, hidden.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// With `--redis`: connects (`Shared::connect`) and prints its warning, if any, on stderr.
pub async fn connect(config: &Config) -> Result<Option<Arc<Shared>>, Error> {
    if config.redis.is_none() {
        return Ok(None);
    }
    let (shared, warning) = Shared::connect(config).await?;
    if let (Some(w), false) = (warning, config.quiet) {
        eprintln!("ratefetch: warning: {w}");
    }
    Ok(Some(Arc::new(shared)))
}

/// A connection to the Redis at `url` that reconnects by itself, made within `within`
/// (retrying with a backoff), or the error that says why not: exit 2 for a bad URL, 1 for a
/// server that did not answer. A command taking longer than `response` counts as lost.
pub async fn manager(
    url: &str,
    within: Duration,
    response: Duration,
) -> Result<ConnectionManager, Error> {
    let unreachable = |reason: String| Error::Redis {
        url: display_url(url),
        reason,
    };
    let client = Client::open(url).map_err(|e| UsageError::new("--redis", e.to_string()))?;
    let settings = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(within.min(Duration::from_secs(10))))
        .set_response_timeout(Some(response))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let deadline = Instant::now() + within;
    let mut backoff = Duration::from_millis(50);
    loop {
        match ConnectionManager::new_with_config(client.clone(), settings.clone()).await {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() + backoff >= deadline => {
                return Err(unreachable(format!(
                    "no answer within {} ({e})",
                    humantime::format_duration(within)
                )))
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Whether waiting may mend a Redis error: a lost or refused connection, a timeout, a server
/// busy loading or scripting. Anything else is `Refused`.
fn classify(e: redis::RedisError) -> SharedError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "NOSCRIPT")
        );
    if transient {
        SharedError::Unreachable(e.to_string())
    } else {
        SharedError::Refused(e.to_string())
    }
}

/// A period in whole microseconds, rounded up (a shorter one would allow more).
fn micros_up(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX)
}

/// `d` rounded up to whole microseconds.
fn up_to_micros(d: Duration) -> Duration {
    Duration::from_micros(micros_up(d))
}

/// The run's limits as the `GRANT` script takes them, read from its `LimitSet` (the one
/// place the run, `--plan`, the audit and Redis read them from), in whole microseconds:
/// Redis' clock (`TIME`) counts microseconds, and the script's arithmetic is on integers.
///
/// Every period and window is rounded **up**: a longer period or window only ever holds a
/// request back (a GCRA of period T' ≥ T and the same burst admits no sequence that the one
/// of period T refuses; a count over a longer window sees at least as many sends), while one
/// rounded down would let through more than the limit allows (1/600 s, 1,666,666.7 ns, kept
/// as 1,666 µs would run 0.04% fast, for hours). The tolerance is computed from the rounded
/// period, `(B − 1)·T'`, so the script runs exactly the GCRA of `pace`.
#[derive(Debug, Clone, PartialEq)]
struct ScriptLimits {
    /// `--rate`, `--burst`: the global GCRA; none when the rate is unlimited.
    pace: Option<Pace>,
    /// `--quota`s, windows rounded up.
    quotas: Vec<Quota>,
    /// `--per-host-quota`s, windows rounded up.
    host_quotas: Vec<Quota>,
}

impl ScriptLimits {
    fn of(limits: &LimitSet) -> ScriptLimits {
        let window = |q: &Quota| Quota {
            limit: q.limit,
            window: up_to_micros(q.window),
        };
        ScriptLimits {
            pace: limits.global_pace().map(|p| Pace {
                period: up_to_micros(p.period),
                burst: p.burst,
            }),
            quotas: limits.quotas.iter().map(window).collect(),
            host_quotas: limits.per_host_quotas.iter().map(window).collect(),
        }
    }

    /// ARGV 3: the period in µs, 0 for none.
    fn period_us(&self) -> u64 {
        self.pace.map_or(0, |p| micros(p.period))
    }

    /// ARGV 4: the tolerance `(B − 1)·T` in µs.
    fn tau_us(&self) -> u64 {
        self.pace.map_or(0, |p| micros(p.tolerance()))
    }

    /// The (limit, window in µs) pairs of the quotas, then of the host quotas.
    fn windows(&self) -> Vec<u64> {
        self.quotas
            .iter()
            .chain(&self.host_quotas)
            .flat_map(|q| [q.limit, micros(q.window)])
            .collect()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Shared {
    /// Connects to `config.redis` (retrying until `config.connect_timeout` has passed),
    /// claims `config.limit_key` for the run's limits, and returns the shared limits with a
    /// warning to print when the server keeps nothing on disk.
    pub async fn connect(config: &Config) -> Result<(Shared, Option<String>), Error> {
        let url = config.redis.as_deref().expect("called with --redis");
        let unreachable = |reason: String| Error::Redis {
            url: display_url(url),
            reason,
        };
        let mut conn = manager(url, config.connect_timeout, RESPONSE_TIMEOUT).await?;
        let shared = Shared::new(config, conn.clone());
        // Claim the key for these limits, or find whose it is.
        let (_, stored): (Option<String>, String) = redis::pipe()
            .cmd("SET")
            .arg(&shared.limits_key)
            .arg(&shared.limits)
            .arg("NX")
            .arg("PX")
            .arg(shared.limits_ttl_ms)
            .cmd("GET")
            .arg(&shared.limits_key)
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if stored != shared.limits {
            return Err(Error::Usage(UsageError::new(
                "--limit-key",
                format!(
                    "{:?} holds other limits in Redis ({stored}); this run's are ({}): run with \
                     the same limits, or name another key",
                    shared.key, shared.limits
                ),
            )));
        }
        shared
            .grant
            .load_async(&mut conn)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        shared
            .cool
            .load_async(&mut conn)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let warning = persistence_warning(&mut conn, url).await;
        Ok((shared, warning))
    }

    fn new(config: &Config, conn: ConnectionManager) -> Shared {
        let key = config.limit_key.clone();
        let prefix = format!("{{{key}}}");
        let limits = LimitSet::of(config);
        let script = ScriptLimits::of(&limits);
        let longest = script
            .quotas
            .iter()
            .chain(&script.host_quotas)
            .map(|q| q.window)
            .chain(script.pace.map(|p| p.period.saturating_mul(p.burst)))
            .chain(limits.host_pace().map(|p| p.period))
            .max()
            .unwrap_or_default();
        // Tiny, and it must outlive idle spells (a long cool-down): an hour at least.
        let limits_ttl_ms = u64::try_from(longest.max(Duration::from_secs(3600)).as_millis())
            .unwrap_or(u64::MAX / 2)
            .saturating_add(60_000);
        Shared {
            conn,
            grant: Script::new(GRANT),
            cool: Script::new(COOL),
            limits_key: format!("{prefix}:limits"),
            rate_key: format!("{prefix}:rate"),
            quota_keys: (1..=script.quotas.len())
                .map(|i| format!("{prefix}:quota:{i}"))
                .collect(),
            prefix,
            key,
            limits: limits.to_string(),
            windows: script.windows(),
            script,
            quotas: limits.quotas,
            stop_at_quota: config.on_quota == OnQuota::Stop,
            limits_ttl_ms,
            id: format!("{:016x}", fastrand::u64(..)),
            seq: AtomicU64::new(0),
            forgot: AtomicBool::new(false),
        }
    }

    /// The `--limit-key` name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Asks for a grant for one request to `host`, whose requests leave at least `interval`
    /// apart (its `--per-host-rate` period or Crawl-delay; zero for none). One round trip.
    pub async fn grant(&self, host: &str, interval: Duration) -> Result<Grant, SharedError> {
        let asked = Instant::now();
        let answer = self.ask(host, interval, HOLD).await?;
        let received = Instant::now();
        let us =
            |i: usize| Duration::from_micros(answer.get(i).copied().unwrap_or(0).max(0) as u64);
        match answer.first() {
            Some(0) => {
                if answer.get(3) == Some(&1) {
                    self.forgot.store(true, Ordering::Relaxed);
                }
                Ok(Grant::At {
                    at: received + us(1),
                    granted: UNIX_EPOCH + us(2),
                    late: received - asked,
                })
            }
            Some(1) => Ok(Grant::Host(us(1))),
            Some(2) => {
                let quota = usize::try_from(answer.get(2).copied().unwrap_or(0))
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| self.quotas.get(i).copied());
                Ok(Grant::Run { wait: us(1), quota })
            }
            Some(-1) => {
                let stored: Option<String> = redis::cmd("GET")
                    .arg(&self.limits_key)
                    .query_async(&mut self.conn.clone())
                    .await
                    .unwrap_or(None);
                Err(SharedError::Mismatch {
                    key: self.key.clone(),
                    stored: stored.unwrap_or_default(),
                })
            }
            _ => Err(SharedError::Unreachable(format!(
                "an unexpected answer from the grant script: {answer:?}"
            ))),
        }
    }

    /// Runs `GRANT` once for a request to `host`, a grant more than `hold` away refused, and
    /// returns its answer as Redis gave it.
    async fn ask(
        &self,
        host: &str,
        interval: Duration,
        hold: Duration,
    ) -> Result<Vec<i64>, SharedError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut call = self.grant.prepare_invoke();
        call.key(&self.limits_key)
            .key(&self.rate_key)
            .key(format!("{}:host:{host}", self.prefix))
            .key(format!("{}:cool:{host}", self.prefix));
        for key in &self.quota_keys {
            call.key(key);
        }
        for i in 1..=self.script.host_quotas.len() {
            call.key(format!("{}:host-quota:{i}:{host}", self.prefix));
        }
        call.arg(&self.limits)
            .arg(micros(hold))
            .arg(self.script.period_us())
            .arg(self.script.tau_us())
            .arg(micros_up(interval))
            .arg(u8::from(self.stop_at_quota))
            .arg(format!("{}:{seq}", self.id))
            .arg(self.limits_ttl_ms)
            .arg(self.script.quotas.len())
            .arg(self.script.host_quotas.len())
            .arg(&self.windows);
        let mut conn = self.conn.clone();
        call.invoke_async(&mut conn).await.map_err(classify)
    }

    /// Tells every process that `host` may not be sent to for `wait` from now (a
    /// `Retry-After`, a limit it announced).
    pub async fn cool_down(&self, host: &str, wait: Duration) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        self.cool
            .key(format!("{}:cool:{host}", self.prefix))
            .arg(micros(wait))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Whether a grant found the shared state gone (a Redis restart without persistence, or
    /// a flush) since the last call; true once per loss.
    pub fn state_lost(&self) -> bool {
        self.forgot.swap(false, Ordering::Relaxed)
    }
}

/// A warning when the server keeps nothing on disk (no AOF, no RDB snapshots): a restart
/// then forgets every count. `None` when it persists, or when it does not say (`CONFIG` may
/// be disabled on managed servers).
async fn persistence_warning(conn: &mut ConnectionManager, url: &str) -> Option<String> {
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(conn)
        .await
        .ok()?;
    let aof = config.get(1).is_some_and(|v| v == "yes");
    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async(conn)
        .await
        .ok()?;
    let rdb = save.get(1).is_some_and(|v| !v.trim().is_empty());
    (!aof && !rdb).then(|| {
        format!(
            "the Redis at {} keeps nothing on disk (appendonly no, no save): if it restarts, \
             the shared quota counts start again (turn on appendonly for quotas)",
            display_url(url)
        )
    })
}

#[cfg(test)]
#[path = "../tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Rate;

    #[test]
    fn the_limits_stored_with_the_key_name_every_limit_and_differ_when_one_does() {
        let config = Config {
            rate: Rate::Every(Duration::from_millis(10)),
            quotas: vec![crate::units::parse_quota("5000/h").unwrap()],
            ..Config::default()
        };
        let text = LimitSet::of(&config).to_string();
        assert_eq!(text, "--rate 100/s --burst 1 --quota 5000/1h");
        let other = Config {
            per_host_rate: Rate::Every(Duration::from_secs(1)),
            ..config
        };
        assert_ne!(LimitSet::of(&other).to_string(), text);
    }

    #[test]
    fn periods_are_kept_in_microseconds_rounded_up() {
        assert_eq!(micros_up(Duration::from_nanos(1_666_667)), 1667);
        assert_eq!(micros_up(Duration::from_millis(5)), 5000);
        assert_eq!(micros_up(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn the_script_takes_the_limit_sets_limits_rounded_up_to_microseconds() {
        let config = Config {
            rate: crate::units::parse_rate("600/s").unwrap(),
            burst: std::num::NonZeroU32::new(4).unwrap(),
            quotas: vec![Quota {
                limit: 5,
                window: Duration::from_nanos(20_000_001),
            }],
            per_host_quotas: vec![crate::units::parse_quota("3/1s").unwrap()],
            ..Config::default()
        };
        let limits = LimitSet::of(&config);
        let script = ScriptLimits::of(&limits);
        // 1/600 s is 1,666,666.67 ns: 1,667 µs, never 1,666 (which would run fast).
        assert_eq!(
            script.pace,
            Some(Pace {
                period: Duration::from_micros(1667),
                burst: 4
            })
        );
        assert_eq!((script.period_us(), script.tau_us()), (1667, 3 * 1667));
        assert_eq!(script.windows(), [5, 20_001, 3, 1_000_000]);
        let unlimited = ScriptLimits::of(&LimitSet::default());
        assert_eq!((unlimited.period_us(), unlimited.tau_us()), (0, 0));
        assert!(unlimited.windows().is_empty());
    }

    #[test]
    fn a_password_in_the_url_is_not_shown() {
        assert_eq!(
            display_url("redis://user:secret@10.0.0.1:6379/0"),
            "redis://user:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            display_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    /// The script, tested against the Rust model of the limits on the same sequences.
    mod against_the_model {
        use std::collections::HashMap;
        use std::num::NonZeroU32;

        use proptest::prelude::*;
        use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

        use super::super::redis_server::{available, Redis};
        use super::*;
        use crate::limits::gcra::Gcra;
        use crate::limits::window::Exact;

        /// An answer of `GRANT`, in µs since the epoch on Redis' clock.
        #[derive(Debug, Clone, Copy, PartialEq)]
        enum Answer {
            /// `{0, wait, at, 0}`: granted at `at`.
            Granted(Duration),
            /// `{1, wait}`: the host must wait.
            Host(Duration),
            /// `{2, wait, quota}`: the run must wait for the 1-based quota.
            Run(Duration, i64),
        }

        /// The Rust model of one key's limits: `limits::gcra` for the global rate and each
        /// host's pace, `limits::window::Exact` with reservations for every quota.
        #[derive(Clone)]
        struct Model {
            pace: Option<Pace>,
            global: Gcra<Duration>,
            quotas: Vec<Exact<Duration>>,
            host_quotas: Vec<Quota>,
            hosts: HashMap<usize, (Gcra<Duration>, Vec<Exact<Duration>>)>,
            stop: bool,
        }

        impl Model {
            fn new(script: &ScriptLimits, stop: bool) -> Model {
                Model {
                    pace: script.pace,
                    global: Gcra::new(),
                    quotas: script.quotas.iter().map(|&q| Exact::new(q)).collect(),
                    host_quotas: script.host_quotas.clone(),
                    hosts: HashMap::new(),
                    stop,
                }
            }

            /// What the script must answer for a request to `host` asked at `now`; a grant
            /// is counted in every limit at its instant.
            fn answer(
                &mut self,
                host: usize,
                host_pace: Option<Pace>,
                now: Duration,
                hold: Duration,
            ) -> Answer {
                let quotas = &self.host_quotas;
                let (gcra, windows) = self.hosts.entry(host).or_insert_with(|| {
                    (Gcra::new(), quotas.iter().map(|&q| Exact::new(q)).collect())
                });
                let mut host_at = now;
                if let Some(p) = host_pace {
                    host_at = host_at.max(gcra.earliest(p, now));
                }
                for w in windows.iter_mut() {
                    host_at = host_at.max(w.free_at(now));
                }
                if host_at > now + hold {
                    return Answer::Host(host_at - now);
                }
                let (mut run_at, mut binds) = (now, 0);
                for (i, w) in self.quotas.iter_mut().enumerate() {
                    let t = w.free_at(now);
                    if t > run_at {
                        (run_at, binds) = (t, i as i64 + 1);
                    }
                }
                if run_at > now + hold || (self.stop && run_at > now) {
                    return Answer::Run(run_at - now, binds);
                }
                let mut at = host_at.max(run_at);
                if let Some(p) = self.pace {
                    at = at.max(self.global.earliest(p, now));
                    self.global.record(p, at);
                }
                if let Some(p) = host_pace {
                    gcra.record(p, at);
                }
                for w in windows.iter_mut().chain(self.quotas.iter_mut()) {
                    w.reserve(at);
                }
                Answer::Granted(at)
            }
        }

        /// One random limit set and the requests asked under it.
        #[derive(Debug, Clone)]
        struct Case {
            /// Rate period (ns) and burst.
            rate: Option<(u64, u32)>,
            /// Per-host rate period (ns).
            per_host: Option<u64>,
            /// (limit, window in ns) of each quota, then of each host quota.
            quotas: Vec<(u64, u64)>,
            host_quotas: Vec<(u64, u64)>,
            stop: bool,
            hold_us: u64,
            /// (host, µs to let pass before asking).
            asks: Vec<(usize, u64)>,
        }

        fn any_case() -> impl Strategy<Value = Case> {
            let quota = (1u64..8, 1_000_000u64..30_000_000);
            (
                proptest::option::weighted(0.85, (20_000u64..4_000_000, 1u32..=5)),
                proptest::option::of(20_000u64..3_000_000),
                proptest::collection::vec(quota.clone(), 0..3),
                proptest::collection::vec(quota, 0..2),
                proptest::bool::weighted(0.2),
                prop_oneof![Just(micros(HOLD)), 0u64..3_000, Just(1u64 << 40)],
                proptest::collection::vec(
                    (0usize..2, prop_oneof![3 => Just(0u64), 1 => 0u64..3_000]),
                    1..60,
                ),
            )
                .prop_map(
                    |(rate, per_host, quotas, host_quotas, stop, hold_us, asks)| Case {
                        rate,
                        per_host,
                        quotas,
                        host_quotas,
                        stop,
                        hold_us,
                        asks,
                    },
                )
        }

        fn quotas(pairs: &[(u64, u64)]) -> Vec<Quota> {
            pairs
                .iter()
                .map(|&(limit, ns)| Quota {
                    limit,
                    window: Duration::from_nanos(ns),
                })
                .collect()
        }

        /// Redis' clock, µs since the epoch.
        async fn redis_now(conn: &mut ConnectionManager) -> Duration {
            let (secs, us): (u64, u64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
            Duration::from_secs(secs) + Duration::from_micros(us)
        }

        async fn check(url: &str, key: String, case: Case) -> Result<(), TestCaseError> {
            let config = Config {
                redis: Some(url.to_string()),
                limit_key: key,
                rate: case.rate.map_or(Rate::Unlimited, |(ns, _)| {
                    Rate::Every(Duration::from_nanos(ns))
                }),
                burst: NonZeroU32::new(case.rate.map_or(1, |(_, b)| b)).expect("1 to 5"),
                per_host_rate: case
                    .per_host
                    .map_or(Rate::Unlimited, |ns| Rate::Every(Duration::from_nanos(ns))),
                quotas: quotas(&case.quotas),
                per_host_quotas: quotas(&case.host_quotas),
                on_quota: if case.stop {
                    OnQuota::Stop
                } else {
                    OnQuota::Wait
                },
                ..Config::default()
            };
            let (shared, _) = Shared::connect(&config).await.expect("connecting");
            let limits = LimitSet::of(&config);
            // The interval the scheduler passes with each grant, and its pace in the model
            // (the grant rounds it up to whole µs).
            let interval = limits.host_pace().map_or(Duration::ZERO, |p| p.period);
            let host_pace = limits
                .host_pace()
                .map(|p| Pace::every(up_to_micros(p.period)));
            let mut model = Model::new(&ScriptLimits::of(&limits), case.stop);
            let hold = Duration::from_micros(case.hold_us);
            let mut conn = shared.conn.clone();
            let mut last = Duration::ZERO;
            for (i, &(host, gap)) in case.asks.iter().enumerate() {
                // Demand, not synchronisation: whatever the gaps turn out to be, the model
                // is asked at the instants the script saw.
                if gap > 0 {
                    tokio::time::sleep(Duration::from_micros(gap)).await;
                }
                let lo = redis_now(&mut conn).await.max(last);
                let raw = shared
                    .ask(&format!("127.0.0.{host}"), interval, hold)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("ask {i}: {e}")))?;
                let hi = redis_now(&mut conn).await;
                let us = |k: usize| Duration::from_micros(raw[k] as u64);
                let got = match raw[0] {
                    0 => {
                        prop_assert_eq!(raw[3], 0, "the state is not new");
                        Answer::Granted(us(2))
                    }
                    1 => Answer::Host(us(1)),
                    2 => Answer::Run(us(1), raw[2]),
                    _ => return Err(TestCaseError::fail(format!("answer {raw:?}"))),
                };
                if let Answer::Granted(at) = got {
                    // Redis' now is at − wait: the model must grant the same instant then.
                    let now = at - us(1);
                    prop_assert!(
                        lo <= now && now <= hi,
                        "now {:?} in {:?}..{:?}",
                        now,
                        lo,
                        hi
                    );
                    let expected = model.answer(host, host_pace, now, hold);
                    prop_assert_eq!(expected, got, "ask {} at {:?}", i, now);
                    last = now;
                } else {
                    // A refusal does not say when it was asked: some instant of Redis' clock
                    // between the two readings gives the model the same answer.
                    let now = (micros(lo)..=micros(hi))
                        .map(Duration::from_micros)
                        .find(|&now| model.clone().answer(host, host_pace, now, hold) == got);
                    prop_assert!(
                        now.is_some(),
                        "ask {}: the script answered {:?}, the model never does in {:?}..{:?}",
                        i,
                        got,
                        lo,
                        hi
                    );
                    last = now.unwrap_or(lo);
                }
            }
            Ok(())
        }

        /// For random limit sets (a rate of tens of µs to a few ms and a burst of 1 to 5, so
        /// that both reservations back to back and catching up within the burst occur; a
        /// per-host pace; quotas and per-host quotas of a few per tens of ms; `--on-quota
        /// stop`; a hold of zero to 20 ms or none), the script's answer to each grant, on a
        /// real Redis, is the model's, to the µs.
        #[test]
        fn the_grant_script_answers_as_the_rust_model_of_the_limits() {
            let name = "the_grant_script_answers_as_the_rust_model_of_the_limits";
            if !available(name) {
                return;
            }
            let redis = Redis::start();
            let url = redis.url();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let mut runner = TestRunner::new(ProptestConfig {
                cases: 20,
                failure_persistence: None,
                ..ProptestConfig::default()
            });
            // Each case (shrinking included) on a key of its own.
            let n = AtomicU64::new(0);
            let result = runner.run(&any_case(), |case| {
                let key = format!("case{}", n.fetch_add(1, Ordering::Relaxed));
                runtime.block_on(check(&url, key, case))
            });
            if let Err(e) = result {
                panic!("{e}");
            }
        }
    }
}
