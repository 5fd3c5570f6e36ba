//! A job queue in Redis, for workers that come and go: `ratefetch enqueue INPUT --redis URL
//! --queue NAME` fills it, `ratefetch --redis URL --queue NAME -o part.csv` is a worker.
//!
//! Keys, all under the hash tag `{NAME}` (one Redis Cluster slot):
//! - `{NAME}:jobs`: a stream, one entry per job. Its ID is `<index>-0`, so a job's place in the
//!   list is its ID and a second `enqueue` of the same list cannot add it twice (an ID must be
//!   above the last). Fields: `url`; `pass`, the passthrough cells as a JSON array (CSV input);
//!   `fail`, `<error_kind> <message>` for a line that is not a URL.
//! - `{NAME}:meta`: a hash: `columns` (the passthrough names, JSON), `fingerprint` (of the
//!   list's first jobs, so another list is refused), `last` (the highest index enqueued) and
//!   `end` (set once the whole list is in: the queue is complete).
//! - the consumer group `ratefetch` on the stream.
//!
//! A worker reads jobs through the group a few at a time, only as its scheduler takes them
//! (a bounded channel), and **acknowledges a job once its row is synced in its report**
//! (`sink::Durable`): `XACK` and `XDEL`, so the stream holds exactly the jobs not done yet
//! and `XLEN` is what is left. It keeps the jobs it holds fresh (`XCLAIM` to itself resets
//! their idle time), so a job waiting on its host's pace does not look abandoned, and takes
//! over jobs another worker left pending longer than `--claim-after` (`XAUTOCLAIM`). A job
//! delivered more than `--max-deliveries` times becomes an error row. At the end, jobs it
//! read and did not finish (a stop) are handed back at once: claimed to itself with an idle
//! time past `--claim-after`, so the next `XAUTOCLAIM` of any worker takes them.
//!
//! Fetching is at least once (a worker killed between a request and its acknowledgement
//! leaves the job to another), rows exactly once after `ratefetch merge`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Failure};
use crate::input::{parse_target, Source};
use crate::job::Job;
use crate::shared::{display_url, manager};

/// The consumer group of the workers.
pub const GROUP: &str = "ratefetch";
/// Jobs whose URLs make the list's fingerprint.
const FINGERPRINT_JOBS: usize = 64;
/// Jobs a worker reads at a time; it holds at most its workers' number and this many more.
pub const READ_CHUNK: usize = 16;
/// Jobs added to the stream per transaction by `enqueue`.
const ADD_CHUNK: usize = 256;
/// How long a read blocks in Redis when the queue has nothing new.
const BLOCK: Duration = Duration::from_millis(500);
/// How long a command may take before the connection counts as lost (a blocking read
/// included).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// After a stop, how long acknowledgements are asked again of a Redis that does not answer.
const STOP_ACK_WAIT: Duration = Duration::from_secs(5);
/// Pending jobs handed back per round trip.
const HAND_BACK_PAGE: usize = 1000;
/// How long `enqueue` waits between two looks at a queue that holds too many unread jobs.
const FULL_WAIT: Duration = Duration::from_millis(200);

/// The keys of one queue.
#[derive(Clone)]
struct Keys {
    jobs: String,
    meta: String,
}

impl Keys {
    fn of(name: &str) -> Keys {
        Keys {
            jobs: format!("{{{name}}}:jobs"),
            meta: format!("{{{name}}}:meta"),
        }
    }
}

fn redis_error(url: &str) -> impl Fn(redis::RedisError) -> Error + '_ {
    move |e| Error::Redis {
        url: display_url(url),
        reason: e.to_string(),
    }
}

fn refused(url: &str, reason: String) -> Error {
    Error::Redis {
        url: display_url(url),
        reason,
    }
}

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// Jobs added to the queue now.
    pub added: u64,
    /// Jobs of the list the queue held already (an earlier `enqueue` of the same list).
    pub already: u64,
}

/// The fingerprint of a list: a hash of its first jobs' indices and lines.
fn fingerprint(jobs: &[Job]) -> String {
    let mut hash = Sha256::new();
    for job in jobs {
        hash.update(job.index.to_le_bytes());
        hash.update(job.url.as_bytes());
        hash.update(b"\n");
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Streams `source` into the queue `name` at `url`, `passthrough` naming its extra columns:
/// a job at a time, never more than `max_unread` jobs waiting in the queue (it waits for the
/// workers meanwhile), skipping what an earlier `enqueue` of the same list added; marks the
/// end of the list. Refuses a queue that holds another list (other columns, other first
/// lines).
pub async fn enqueue(
    url: &str,
    name: &str,
    mut source: Source,
    passthrough: &[String],
    max_unread: u64,
    connect_timeout: Duration,
) -> Result<Enqueued, Error> {
    let keys = Keys::of(name);
    let fail = redis_error(url);
    let mut conn = manager(url, connect_timeout, RESPONSE_TIMEOUT).await?;
    // The list is read on a thread of its own (a file, or stdin that may block).
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<Job>>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(ADD_CHUNK);
        loop {
            match source.next_job() {
                Ok(Some(job)) => {
                    batch.push(job);
                    if batch.len() == ADD_CHUNK {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(ADD_CHUNK));
                        if tx.blocking_send(Ok(full)).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        let _ = tx.blocking_send(Ok(batch));
    });
    let input_error = |e: std::io::Error| Error::Input {
        path: "<input>".into(),
        source: e,
    };
    // The list's first jobs, for its fingerprint.
    let mut head: Vec<Job> = Vec::new();
    let mut ended = false;
    while head.len() < FINGERPRINT_JOBS {
        match rx.recv().await {
            Some(batch) => head.extend(batch.map_err(input_error)?),
            None => {
                ended = true;
                break;
            }
        }
    }
    let columns = serde_json::to_string(passthrough).expect("strings serialise");
    let print = fingerprint(&head[..head.len().min(FINGERPRINT_JOBS)]);
    // Claim the queue for this list, or check that it is this list.
    let (_, _, stored_columns, stored_print, last): (
        bool,
        bool,
        Option<String>,
        Option<String>,
        Option<u64>,
    ) = redis::pipe()
        .atomic()
        .hset_nx(&keys.meta, "columns", &columns)
        .hset_nx(&keys.meta, "fingerprint", &print)
        .hget(&keys.meta, "columns")
        .hget(&keys.meta, "fingerprint")
        .hget(&keys.meta, "last")
        .query_async(&mut conn)
        .await
        .map_err(&fail)?;
    if stored_columns.as_deref() != Some(columns.as_str()) {
        return Err(refused(
            url,
            format!(
                "the queue {name:?} holds a list with other columns ({}); this list has {columns}",
                stored_columns.unwrap_or_default()
            ),
        ));
    }
    if stored_print.as_deref() != Some(print.as_str()) {
        return Err(refused(
            url,
            format!("the queue {name:?} holds another list (its first lines differ)"),
        ));
    }
    let mut last = last.unwrap_or(0);
    let mut done = Enqueued {
        added: 0,
        already: 0,
    };
    let mut pending: Vec<Job> = head;
    loop {
        if pending.len() >= ADD_CHUNK || (ended && !pending.is_empty()) {
            let chunk: Vec<Job> = pending.drain(..pending.len().min(ADD_CHUNK)).collect();
            add(&mut conn, &keys, &chunk, &mut last, &mut done, max_unread)
                .await
                .map_err(&fail)?;
            continue;
        }
        if ended {
            break;
        }
        match rx.recv().await {
            Some(batch) => pending.extend(batch.map_err(input_error)?),
            None => ended = true,
        }
    }
    reader.await.expect("reading the list does not panic");
    redis::cmd("HSET")
        .arg(&keys.meta)
        .arg("end")
        .arg(last)
        .query_async::<()>(&mut conn)
        .await
        .map_err(&fail)?;
    Ok(done)
}

/// Adds the jobs of `chunk` not in the queue yet (index above `last`) in one transaction,
/// once the queue holds no more than `max_unread` jobs.
async fn add(
    conn: &mut ConnectionManager,
    keys: &Keys,
    chunk: &[Job],
    last: &mut u64,
    done: &mut Enqueued,
    max_unread: u64,
) -> redis::RedisResult<()> {
    let fresh: Vec<&Job> = chunk.iter().filter(|j| j.index > *last).collect();
    done.already += (chunk.len() - fresh.len()) as u64;
    let Some(top) = fresh.last().map(|j| j.index) else {
        return Ok(());
    };
    loop {
        let left: u64 = redis::cmd("XLEN").arg(&keys.jobs).query_async(conn).await?;
        if left <= max_unread {
            break;
        }
        tokio::time::sleep(FULL_WAIT).await;
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for job in &fresh {
        let cmd = pipe
            .cmd("XADD")
            .arg(&keys.jobs)
            .arg(format!("{}-0", job.index))
            .arg("url")
            .arg(&job.url);
        if !job.passthrough.is_empty() {
            cmd.arg("pass")
                .arg(serde_json::to_string(&job.passthrough).expect("strings serialise"));
        }
        if let Err(f) = &job.target {
            cmd.arg("fail").arg(format!("{} {}", f.kind, f.message));
        }
        cmd.ignore();
    }
    pipe.cmd("HSET")
        .arg(&keys.meta)
        .arg("last")
        .arg(top)
        .ignore();
    // The list goes on past a queue once complete: it is not complete any more.
    pipe.cmd("HDEL").arg(&keys.meta).arg("end").ignore();
    match pipe.query_async::<()>(conn).await {
        Ok(()) => {}
        // Another enqueue of the same list added them first: the queue has them.
        Err(e) if e.to_string().contains("equal or smaller") => {}
        Err(e) => return Err(e),
    }
    done.added += fresh.len() as u64;
    *last = top;
    Ok(())
}

/// A worker's side of the queue.
pub struct Queue {
    url: String,
    keys: Keys,
    /// For acknowledgements, claims and checks.
    conn: ConnectionManager,
    /// For the blocking reads (a connection of their own: a blocked read holds its
    /// connection).
    read: ConnectionManager,
    consumer: String,
    /// The report's passthrough columns, as `enqueue` found them.
    pub passthrough: Vec<String>,
    /// Jobs this worker read and has not acknowledged.
    held: Mutex<HashSet<u64>>,
    /// Jobs handed to the run so far (read or taken over).
    taken: AtomicU64,
    /// Set when the queue became unusable: the worker stopped reading.
    failed: Mutex<Option<String>>,
    claim_after: Duration,
    max_deliveries: u32,
}

/// What a step of the reader did.
enum Read {
    /// Took this many jobs (new or taken over).
    Took(usize),
    /// The queue is complete.
    Complete,
}

/// Whether a Redis error says the queue itself is gone (its group or stream), which no
/// waiting mends.
fn is_gone(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// The index a stream ID `<index>-0` stands for.
fn index_of(id: &str) -> Option<u64> {
    id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

fn ids(indices: &[u64]) -> Vec<String> {
    indices.iter().map(|i| format!("{i}-0")).collect()
}

impl Queue {
    /// Joins the queue `config.queue` at `config.redis` as a new consumer of its group.
    pub async fn open(config: &Config) -> Result<Queue, Error> {
        let url = config
            .redis
            .clone()
            .expect("validated: --queue needs --redis");
        let name = config.queue.as_deref().expect("called with --queue");
        let keys = Keys::of(name);
        let fail = redis_error(&url);
        let mut conn = manager(&url, config.connect_timeout, RESPONSE_TIMEOUT).await?;
        let read = manager(&url, config.connect_timeout, RESPONSE_TIMEOUT).await?;
        let columns: Option<String> = redis::cmd("HGET")
            .arg(&keys.meta)
            .arg("columns")
            .query_async(&mut conn)
            .await
            .map_err(&fail)?;
        let Some(columns) = columns else {
            return Err(refused(
                &url,
                format!(
                    "there is no queue {name:?} (`ratefetch enqueue INPUT --redis URL --queue \
                     {name}` makes it)"
                ),
            ));
        };
        let passthrough: Vec<String> = serde_json::from_str(&columns)
            .map_err(|e| refused(&url, format!("the queue {name:?} has damaged columns: {e}")))?;
        let made: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.jobs)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match made {
            Ok(()) => {}
            Err(e) if e.to_string().contains("BUSYGROUP") => {}
            Err(e) => return Err(fail(e)),
        }
        Ok(Queue {
            url: url.clone(),
            keys,
            conn,
            read,
            consumer: consumer_name(),
            passthrough,
            held: Mutex::new(HashSet::new()),
            taken: AtomicU64::new(0),
            failed: Mutex::new(None),
            claim_after: config.claim_after,
            max_deliveries: config.max_deliveries,
        })
    }

    /// The jobs of the queue as a `Source`, read by a task until the queue is complete (its
    /// end marked, every job acknowledged) or `stop`. The worker holds at most `most` jobs
    /// not finished: `rows` counts the finished ones (rows written).
    pub fn feed(
        self: &Arc<Queue>,
        stop: CancellationToken,
        rows: watch::Receiver<u64>,
        most: usize,
    ) -> (Source, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(most.max(1));
        let done = CancellationToken::new();
        let (reader, keeper) = (self.clone(), self.clone());
        let (keeper_stop, keeper_done) = (stop.clone(), done.clone());
        let task = tokio::spawn(async move {
            let keeper = tokio::spawn(async move {
                keeper.keep_fresh(keeper_stop, keeper_done).await;
            });
            reader.read_jobs(tx, stop, rows, most).await;
            done.cancel();
            let _ = keeper.await;
        });
        (Source::channel(rx), task)
    }

    /// Why the worker had to stop reading, if the queue became unusable (gone from Redis).
    pub fn failure(&self) -> Option<Error> {
        let why = self.failed.lock().expect("queue lock").clone()?;
        Some(refused(&self.url, why))
    }

    /// How many more jobs the worker may take now (it holds at most `most` not finished).
    fn room(&self, rows: &watch::Receiver<u64>, most: usize) -> usize {
        let finished = *rows.borrow();
        let out = self.taken.load(Ordering::Relaxed).saturating_sub(finished);
        most.saturating_sub(usize::try_from(out).unwrap_or(usize::MAX))
    }

    /// How often the jobs held are kept fresh: well within `--claim-after`.
    fn refresh_every(&self) -> Duration {
        (self.claim_after / 8).clamp(Duration::from_millis(25), Duration::from_secs(5))
    }

    /// Acknowledges the jobs whose rows `done` says are on disk, until it closes (the sink's
    /// writer is done). Once `stop` came, a Redis that does not answer is given up on after a
    /// while (those jobs go to another worker).
    pub fn acknowledge(
        self: &Arc<Queue>,
        mut done: mpsc::UnboundedReceiver<Vec<u64>>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let queue = self.clone();
        tokio::spawn(async move {
            while let Some(mut indices) = done.recv().await {
                // What came meanwhile goes in the same round trip.
                while let Ok(more) = done.try_recv() {
                    indices.extend(more);
                }
                queue.ack(&indices, &stop).await;
            }
        })
    }

    /// `XACK` and `XDEL` for `indices` in one transaction, asked again until Redis answers
    /// (the queue cannot be complete without them); after a stop, given up on after a while.
    async fn ack(&self, indices: &[u64], stop: &CancellationToken) {
        if indices.is_empty() {
            return;
        }
        let ids = ids(indices);
        let mut conn = self.conn.clone();
        let mut backoff = Duration::from_millis(100);
        let mut stopping_since: Option<Instant> = None;
        loop {
            let acked: redis::RedisResult<()> = redis::pipe()
                .atomic()
                .cmd("XACK")
                .arg(&self.keys.jobs)
                .arg(GROUP)
                .arg(&ids)
                .ignore()
                .cmd("XDEL")
                .arg(&self.keys.jobs)
                .arg(&ids)
                .ignore()
                .query_async(&mut conn)
                .await;
            let Err(e) = acked else { break };
            if stop.is_cancelled() {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() > STOP_ACK_WAIT {
                    eprintln!(
                        "ratefetch: warning: {} jobs could not be acknowledged in the queue \
                         ({e}); another worker will fetch them again",
                        indices.len()
                    );
                    break;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        let mut held = self.held.lock().expect("queue lock");
        for i in indices {
            held.remove(i);
        }
    }

    /// Hands back every job this worker's consumer still has pending (read and not
    /// finished, including any read whose answer it never saw), for others to take at once:
    /// claimed to itself with an idle time past `--claim-after`, their delivery count as it
    /// was (a hand-back is not a delivery).
    pub async fn hand_back(&self) {
        self.held.lock().expect("queue lock").clear();
        let mut conn = self.conn.clone();
        let idle = u64::try_from(self.claim_after.as_millis())
            .unwrap_or(u64::MAX / 4)
            .saturating_mul(2)
            .saturating_add(1000);
        let mut start = "-".to_string();
        loop {
            let pending: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
                .arg(&self.keys.jobs)
                .arg(GROUP)
                .arg(&start)
                .arg("+")
                .arg(HAND_BACK_PAGE)
                .arg(&self.consumer)
                .query_async(&mut conn)
                .await;
            let Ok(pending) = pending else { return };
            let Some(last) = pending.ids.last() else {
                return;
            };
            start = format!("({}", last.id);
            let mut pipe = redis::pipe();
            for p in &pending.ids {
                pipe.cmd("XCLAIM")
                    .arg(&self.keys.jobs)
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(0)
                    .arg(&p.id)
                    .arg("IDLE")
                    .arg(idle)
                    .arg("RETRYCOUNT")
                    .arg(p.times_delivered.saturating_sub(1))
                    .arg("JUSTID")
                    .ignore();
            }
            if pipe.query_async::<()>(&mut conn).await.is_err()
                || pending.ids.len() < HAND_BACK_PAGE
            {
                return;
            }
        }
    }

    /// The reader: jobs as earlier ones finish, until the queue is complete or `stop`. Jobs
    /// that other workers left pending longer than `--claim-after` come first (taken over),
    /// so that a backlog of new jobs does not keep them waiting; then new ones. A Redis call
    /// under way is not cut short by a stop (its jobs would be this worker's unseen); it is
    /// short (a read blocks at most `BLOCK`).
    async fn read_jobs(
        &self,
        tx: mpsc::Sender<Job>,
        stop: CancellationToken,
        mut rows: watch::Receiver<u64>,
        most: usize,
    ) {
        let claim_every = self.refresh_every();
        let mut claim_at = Instant::now();
        let mut cursor = "0-0".to_string();
        let mut backoff = Duration::from_millis(100);
        loop {
            // Only as earlier jobs finish.
            let room = loop {
                rows.borrow_and_update();
                let room = self.room(&rows, most);
                if room > 0 {
                    break room.min(READ_CHUNK);
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = rows.changed() => if changed.is_err() { return },
                }
            };
            if stop.is_cancelled() {
                return;
            }
            let Ok(permits) = tx.reserve_many(room).await else {
                return;
            };
            let step = async {
                if Instant::now() >= claim_at {
                    claim_at = Instant::now() + claim_every;
                    let claimed = self.take_over(&mut cursor, permits).await?;
                    return Ok(Read::Took(claimed));
                }
                let block = BLOCK.min(claim_at.saturating_duration_since(Instant::now()));
                let mut read = self.read.clone();
                let reply: StreamReadReply = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg("COUNT")
                    .arg(room)
                    .arg("BLOCK")
                    .arg(u64::try_from(block.as_millis()).unwrap_or(1).max(1))
                    .arg("STREAMS")
                    .arg(&self.keys.jobs)
                    .arg(">")
                    .query_async(&mut read)
                    .await?;
                let entries: Vec<StreamId> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
                if entries.is_empty() {
                    return Ok(if self.complete().await? {
                        Read::Complete
                    } else {
                        Read::Took(0)
                    });
                }
                for (entry, permit) in entries.iter().zip(permits) {
                    if let Some(job) = self.job(entry, 1) {
                        permit.send(job);
                    }
                }
                redis::RedisResult::Ok(Read::Took(entries.len()))
            };
            match step.await {
                Ok(Read::Complete) => return,
                Ok(Read::Took(claimed)) => {
                    backoff = Duration::from_millis(100);
                    if claimed > 0 {
                        // Perhaps more are stale: look again at once.
                        claim_at = Instant::now();
                    }
                }
                Err(e) if is_gone(&e) => {
                    self.failed.lock().expect("queue lock").get_or_insert_with(|| {
                        format!("the queue is gone from Redis ({e}); a restart without persistence?")
                    });
                    return;
                }
                Err(e) => {
                    eprintln!(
                        "ratefetch: waiting for the queue at {} ({e})",
                        display_url(&self.url)
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Takes over jobs other workers left pending longer than `--claim-after`, as many as
    /// `permits`, scanning on from `cursor`. Returns how many it took.
    async fn take_over(
        &self,
        cursor: &mut String,
        permits: mpsc::PermitIterator<'_, Job>,
    ) -> redis::RedisResult<usize> {
        let mut conn = self.conn.clone();
        let count = permits.len();
        let stale_ms = u64::try_from(self.claim_after.as_millis()).unwrap_or(u64::MAX);
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.keys.jobs)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(stale_ms)
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        *cursor = claimed.next_stream_id.clone();
        if claimed.claimed.is_empty() {
            return Ok(0);
        }
        // Each one's delivery count (it counts this delivery).
        let mut pipe = redis::pipe();
        for entry in &claimed.claimed {
            pipe.cmd("XPENDING")
                .arg(&self.keys.jobs)
                .arg(GROUP)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let counts: Vec<StreamPendingCountReply> = pipe.query_async(&mut conn).await?;
        for ((entry, pending), permit) in claimed.claimed.iter().zip(&counts).zip(permits) {
            let deliveries = pending.ids.first().map_or(2, |p| p.times_delivered);
            if let Some(job) = self.job(entry, deliveries) {
                permit.send(job);
            }
        }
        Ok(claimed.claimed.len())
    }

    /// Keeps the jobs held fresh until `done` or `stop`, whatever the reader waits for: a
    /// job that waits on its host's pace must not look abandoned.
    async fn keep_fresh(&self, stop: CancellationToken, done: CancellationToken) {
        let every = self.refresh_every();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = done.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let held: Vec<u64> = self
                .held
                .lock()
                .expect("queue lock")
                .iter()
                .copied()
                .collect();
            let mut conn = self.conn.clone();
            for part in held.chunks(512) {
                // Claimed to itself: their idle time starts again (an error: next round).
                let _: redis::RedisResult<Value> = redis::cmd("XCLAIM")
                    .arg(&self.keys.jobs)
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(0)
                    .arg(ids(part))
                    .arg("JUSTID")
                    .query_async(&mut conn)
                    .await;
            }
        }
    }

    /// Whether the queue is complete: its end marked, nothing left in it.
    async fn complete(&self) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let (end, left): (Option<u64>, u64) = redis::pipe()
            .hget(&self.keys.meta, "end")
            .cmd("XLEN")
            .arg(&self.keys.jobs)
            .query_async(&mut conn)
            .await?;
        Ok(end.is_some() && left == 0)
    }

    /// The job of a stream entry delivered `deliveries` times (held from now on); beyond
    /// `--max-deliveries`, a job that fails at once.
    fn job(&self, entry: &StreamId, deliveries: usize) -> Option<Job> {
        let index = index_of(&entry.id)?;
        let url: String = entry.get("url").unwrap_or_default();
        let passthrough: Vec<String> = entry
            .get::<String>("pass")
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_else(|| vec![String::new(); self.passthrough.len()]);
        let target = if deliveries > self.max_deliveries as usize {
            Err(Failure::new(
                ErrorKind::Other,
                format!("given up after {} deliveries", self.max_deliveries),
            ))
        } else {
            match entry.get::<String>("fail") {
                Some(fail) => {
                    let (kind, message) = fail.split_once(' ').unwrap_or((&fail, ""));
                    Err(Failure::new(
                        ErrorKind::from_name(kind).unwrap_or(ErrorKind::Other),
                        message,
                    ))
                }
                None => parse_target(&url),
            }
        };
        self.held.lock().expect("queue lock").insert(index);
        self.taken.fetch_add(1, Ordering::Relaxed);
        Some(Job {
            index,
            url,
            target,
            passthrough,
        })
    }
}

/// A consumer name unique to this process: host, process id and a random part.
fn consumer_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for its length; gethostname writes at most that many bytes.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "host".to_string()
    };
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_id_is_the_jobs_index() {
        assert_eq!(index_of("42-0"), Some(42));
        assert_eq!(index_of("x-0"), None);
        assert_eq!(ids(&[1, 7]), ["1-0", "7-0"]);
    }

    #[test]
    fn the_fingerprint_tells_lists_apart_by_their_first_lines() {
        let job = |index: u64, url: &str| Job {
            index,
            url: url.into(),
            target: parse_target(url),
            passthrough: Vec::new(),
        };
        let a = [job(1, "https://a.example/1"), job(2, "https://a.example/2")];
        let b = [job(1, "https://a.example/1"), job(2, "https://b.example/2")];
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
