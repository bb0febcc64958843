//! The background task: gathers events into batches (by count, bytes and linger time), sends
//! each batch to `/collection/batch/{stream}` with retries, and settles every event of it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use crate::auth::Credentials;
use crate::client::{problem_detail, Counters, Outcome};
use crate::error::{retryable_status, ClientError};
use crate::retry::{parse_retry_after, RetryPolicy};

/// `{"messages":[` and `]}` around the messages.
const ENVELOPE_BYTES: usize = 15;

pub(crate) enum Command {
    Event(Pending),
    Flush(Waiter),
    Close(Waiter),
}

/// One event waiting for its outcome. It holds a buffer permit until it is dropped, which is
/// when it has been settled: that is what bounds the client's memory.
pub(crate) struct Pending {
    pub json: Vec<u8>,
    pub reply: oneshot::Sender<Outcome>,
    pub _permit: OwnedSemaphorePermit,
}

/// Someone waiting for every event sent before to be settled.
pub(crate) enum Waiter {
    Async(oneshot::Sender<()>),
    Blocking(std::sync::mpsc::SyncSender<()>),
}

impl Waiter {
    fn wake(self) {
        // The waiter may have given up (a dropped future, a blocking wait that timed out).
        match self {
            Waiter::Async(tx) => {
                let _ = tx.send(());
            }
            Waiter::Blocking(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

pub(crate) struct WorkerConfig {
    pub http: reqwest::Client,
    pub url: Url,
    pub credentials: Credentials,
    pub retry: RetryPolicy,
    pub batch_size: usize,
    pub max_batch_bytes: usize,
    pub linger: Duration,
    pub max_in_flight: usize,
}

/// What the batch tasks share.
struct Shared {
    http: reqwest::Client,
    url: Url,
    credentials: Credentials,
    retry: RetryPolicy,
    counters: Arc<Counters>,
}

pub(crate) struct Worker {
    rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    batch_size: usize,
    max_batch_bytes: usize,
    linger: Duration,
    max_in_flight: usize,
    /// The open batch, its body size so far, and when it is sent even if not full.
    open: Vec<Pending>,
    open_bytes: usize,
    deadline: Option<Instant>,
    /// Sealed batches waiting for a request slot, by sequence number.
    queued: VecDeque<(u64, Vec<Pending>)>,
    in_flight: JoinSet<()>,
    in_flight_seq: HashMap<Id, u64>,
    /// Sealed batches not settled yet (queued or in flight).
    unsettled: BTreeSet<u64>,
    next_seq: u64,
    /// Waiters, each with the sequence number below which everything must be settled.
    waiters: Vec<(u64, Waiter)>,
    receiving: bool,
}

impl Worker {
    pub fn new(
        rx: mpsc::UnboundedReceiver<Command>,
        config: WorkerConfig,
        counters: Arc<Counters>,
    ) -> Self {
        Worker {
            rx,
            shared: Arc::new(Shared {
                http: config.http,
                url: config.url,
                credentials: config.credentials,
                retry: config.retry,
                counters,
            }),
            batch_size: config.batch_size,
            max_batch_bytes: config.max_batch_bytes,
            linger: config.linger,
            max_in_flight: config.max_in_flight,
            open: Vec::new(),
            open_bytes: ENVELOPE_BYTES,
            deadline: None,
            queued: VecDeque::new(),
            in_flight: JoinSet::new(),
            in_flight_seq: HashMap::new(),
            unsettled: BTreeSet::new(),
            next_seq: 0,
            waiters: Vec::new(),
            receiving: true,
        }
    }

    pub async fn run(mut self) {
        loop {
            self.dispatch();
            self.wake_waiters();
            if !self.receiving
                && self.open.is_empty()
                && self.queued.is_empty()
                && self.in_flight.is_empty()
            {
                break;
            }
            // Far enough never to fire; only used while no batch is open (the branch is
            // disabled then anyway).
            let deadline = self
                .deadline
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                done = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    let id = match done {
                        Some(Ok((id, ()))) => id,
                        // A batch task that panicked dropped its events, whose receipts then
                        // say Failed(Closed); its slot is freed all the same.
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "a batch task ended abnormally");
                            e.id()
                        }
                        None => continue,
                    };
                    if let Some(seq) = self.in_flight_seq.remove(&id) {
                        self.unsettled.remove(&seq);
                    }
                }
                command = self.rx.recv(), if self.receiving => match command {
                    Some(Command::Event(p)) => self.add(p),
                    Some(Command::Flush(w)) => {
                        self.seal();
                        self.waiters.push((self.next_seq, w));
                    }
                    Some(Command::Close(w)) => {
                        self.seal();
                        self.waiters.push((self.next_seq, w));
                        self.stop_receiving();
                    }
                    // Every client handle is gone: deliver what is held, then end.
                    None => {
                        self.seal();
                        self.receiving = false;
                    }
                },
                _ = tokio::time::sleep_until(deadline), if self.deadline.is_some() => self.seal(),
            }
        }
        self.wake_waiters();
    }

    /// No more commands: events that raced with `close` into the channel are failed (their
    /// senders saw `send` succeed, so they get an outcome), later waiters are woken.
    fn stop_receiving(&mut self) {
        self.receiving = false;
        self.rx.close();
        while let Ok(command) = self.rx.try_recv() {
            match command {
                Command::Event(p) => {
                    Counters::add(&self.shared.counters.failed, 1);
                    let _ = p.reply.send(Outcome::Failed(Arc::new(ClientError::Closed)));
                }
                Command::Flush(w) | Command::Close(w) => self.waiters.push((self.next_seq, w)),
            }
        }
    }

    fn add(&mut self, p: Pending) {
        // A comma before every message but the first.
        let size = p.json.len() + usize::from(!self.open.is_empty());
        if !self.open.is_empty() && self.open_bytes + size > self.max_batch_bytes {
            self.seal();
        }
        let size = p.json.len() + usize::from(!self.open.is_empty());
        self.open_bytes += size;
        self.open.push(p);
        if self.open.len() == 1 {
            self.deadline = Some(Instant::now() + self.linger);
        }
        if self.open.len() >= self.batch_size || self.open_bytes >= self.max_batch_bytes {
            self.seal();
        }
    }

    fn seal(&mut self) {
        self.deadline = None;
        self.open_bytes = ENVELOPE_BYTES;
        if self.open.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.open);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unsettled.insert(seq);
        self.queued.push_back((seq, batch));
    }

    fn dispatch(&mut self) {
        while self.in_flight.len() < self.max_in_flight {
            let Some((seq, batch)) = self.queued.pop_front() else {
                break;
            };
            let shared = self.shared.clone();
            let handle = self.in_flight.spawn(settle(shared, batch));
            self.in_flight_seq.insert(handle.id(), seq);
        }
    }

    fn wake_waiters(&mut self) {
        // Everything below the oldest unsettled batch is settled.
        let settled_below = self.unsettled.first().copied().unwrap_or(self.next_seq);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(upto, _)| *upto <= settled_below);
        self.waiters = waiting;
        for (_, w) in ready {
            w.wake();
        }
        if !self.receiving && self.unsettled.is_empty() {
            for (_, w) in std::mem::take(&mut self.waiters) {
                w.wake();
            }
        }
    }
}

/// The 207 answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchAnswer {
    batch_id: String,
    responses: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Entry {
    #[serde(rename_all = "camelCase")]
    Accepted { xaction_id: String },
    #[serde(rename_all = "camelCase")]
    Refused {
        status_code: u16,
        #[serde(default)]
        message: String,
    },
}

/// What a request came to, short of failing.
enum Answer {
    /// 2xx: one entry per message.
    Batch(BatchAnswer),
    /// 400 / 413: the whole request refused; sending it again will not change that.
    Refused { status: u16, message: String },
}

/// Sends one batch and settles each of its events: counters first, then the receipt, so a
/// caller that awaited its receipts sees them counted. Messages a 207 answers 429 or 503 (the
/// edge could not write them; the others were written) are sent again, alone, under the same
/// retry policy as a whole request.
async fn settle(shared: Arc<Shared>, mut batch: Vec<Pending>) {
    let mut retries = 0u32;
    loop {
        let result = deliver(&shared, body_of(&batch)).await;
        let counters = &shared.counters;
        if retries == 0 {
            Counters::add(&counters.batches, 1);
        }
        let n = batch.len() as u64;
        match result {
            Ok(Answer::Batch(answer)) if answer.responses.len() == batch.len() => {
                let can_retry = retries < shared.retry.max_retries;
                let mut again = Vec::new();
                for (p, entry) in batch.into_iter().zip(answer.responses) {
                    let outcome = match entry {
                        Entry::Accepted { xaction_id } => {
                            Counters::add(&counters.accepted, 1);
                            Outcome::Accepted {
                                xaction_id,
                                batch_id: answer.batch_id.clone(),
                            }
                        }
                        Entry::Refused { status_code, .. }
                            if can_retry && retryable_status(status_code) =>
                        {
                            again.push(p);
                            continue;
                        }
                        Entry::Refused {
                            status_code,
                            message,
                        } => {
                            Counters::add(&counters.refused, 1);
                            Outcome::Refused {
                                status_code,
                                message,
                                batch_id: Some(answer.batch_id.clone()),
                            }
                        }
                    };
                    // A dropped receipt is fine: the caller did not want the outcome.
                    let _ = p.reply.send(outcome);
                }
                if again.is_empty() {
                    return;
                }
                retries += 1;
                let wait = shared.retry.delay(retries, None);
                tracing::debug!(
                    events = again.len(),
                    retry = retries,
                    wait_ms = wait.as_millis() as u64,
                    "the edge did not write some messages of a batch; sending them again"
                );
                Counters::add(&counters.retries, 1);
                tokio::time::sleep(wait).await;
                batch = again;
            }
            Ok(Answer::Batch(answer)) => {
                let error = Arc::new(ClientError::Protocol {
                    url: shared.url.to_string(),
                    message: format!(
                        "batch {}: {} entries for {} messages",
                        answer.batch_id,
                        answer.responses.len(),
                        batch.len()
                    ),
                });
                Counters::add(&counters.failed, n);
                for p in batch {
                    let _ = p.reply.send(Outcome::Failed(error.clone()));
                }
                return;
            }
            Ok(Answer::Refused { status, message }) => {
                Counters::add(&counters.refused, n);
                for p in batch {
                    let _ = p.reply.send(Outcome::Refused {
                        status_code: status,
                        message: message.clone(),
                        batch_id: None,
                    });
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, events = n, "batch failed");
                let error = Arc::new(e);
                Counters::add(&counters.failed, n);
                for p in batch {
                    let _ = p.reply.send(Outcome::Failed(error.clone()));
                }
                return;
            }
        }
    }
}

/// The request body of a batch: the collection envelope around the events' messages.
fn body_of(batch: &[Pending]) -> Bytes {
    let mut body =
        Vec::with_capacity(ENVELOPE_BYTES + batch.iter().map(|p| p.json.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"messages\":[");
    for (i, p) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&p.json);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

/// One attempt's failure: the error, and how long the server asked to wait.
struct Attempt {
    error: ClientError,
    retry_after: Option<Duration>,
}

impl From<ClientError> for Attempt {
    fn from(error: ClientError) -> Self {
        Attempt {
            error,
            retry_after: None,
        }
    }
}

enum Step {
    /// The edge refused this token (401/403, with its message) and it can be replaced.
    Renew {
        token: String,
        status: u16,
        message: String,
    },
    Fail(Attempt),
}

/// Posts the batch until it gets an answer that settles it, or retries run out.
async fn deliver(shared: &Shared, body: Bytes) -> Result<Answer, ClientError> {
    let mut retries = 0u32;
    let mut renewed = false;
    loop {
        let failure = match attempt(shared, body.clone()).await {
            Ok(answer) => return Ok(answer),
            Err(Step::Renew {
                token,
                status,
                message,
            }) => {
                if renewed {
                    // Refused again right after renewal: not a stale token but a key without
                    // access to this stream (another org, revoked).
                    return Err(ClientError::Unauthorized { status, message });
                }
                renewed = true;
                shared.credentials.invalidate(&token).await;
                Counters::add(&shared.counters.retries, 1);
                continue;
            }
            Err(Step::Fail(a)) => a,
        };
        if !failure.error.is_retryable() {
            return Err(failure.error);
        }
        if retries >= shared.retry.max_retries {
            return Err(ClientError::RetriesExhausted {
                attempts: retries + 1,
                last: Box::new(failure.error),
            });
        }
        retries += 1;
        let wait = shared.retry.delay(retries, failure.retry_after);
        tracing::debug!(error = %failure.error, retry = retries, wait_ms = wait.as_millis() as u64, "retrying batch");
        Counters::add(&shared.counters.retries, 1);
        tokio::time::sleep(wait).await;
    }
}

async fn attempt(shared: &Shared, body: Bytes) -> Result<Answer, Step> {
    let url = shared.url.to_string();
    let token = shared
        .credentials
        .token(&shared.http)
        .await
        .map_err(|e| Step::Fail(e.into()))?;
    let mut request = shared
        .http
        .post(shared.url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body);
    if let Some(t) = &token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.map_err(|source| {
        Step::Fail(
            ClientError::Transport {
                url: url.clone(),
                source,
            }
            .into(),
        )
    })?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let bytes = response.bytes().await.map_err(|source| {
        Step::Fail(
            ClientError::Transport {
                url: url.clone(),
                source,
            }
            .into(),
        )
    })?;
    if (200..300).contains(&status) {
        // Not retried when unreadable: the edge has taken the batch, and sending it again
        // would write its events twice.
        return serde_json::from_slice(&bytes)
            .map(Answer::Batch)
            .map_err(|e| {
                Step::Fail(
                    ClientError::Protocol {
                        url,
                        message: format!("a {status} answer that is not a batch answer: {e}"),
                    }
                    .into(),
                )
            });
    }
    let message = problem_detail(&bytes);
    match status {
        400 | 413 => Ok(Answer::Refused { status, message }),
        401 | 403 => match token {
            Some(token) if shared.credentials.renewable() => Err(Step::Renew {
                token,
                status,
                message,
            }),
            _ => Err(Step::Fail(
                ClientError::Unauthorized { status, message }.into(),
            )),
        },
        _ => Err(Step::Fail(Attempt {
            error: ClientError::Status {
                url,
                status,
                message,
            },
            retry_after,
        })),
    }
}
