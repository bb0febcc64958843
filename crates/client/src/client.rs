//! The public handle: the builder, `send` / `try_send`, receipts and outcomes, `flush`,
//! `close` and the counters.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use reqwest::Url;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

use crate::auth::{Auth, Credentials};
use crate::error::ClientError;
use crate::event::{Envelope, Event, SchemaRef};
use crate::retry::RetryPolicy;
use crate::worker::{Command, Pending, Waiter, Worker, WorkerConfig};

/// The edge's limit on a collection request body (`edge.collection_max_bytes`).
pub const EDGE_MAX_BODY_BYTES: usize = 1_000_000;
/// The edge's default limit on messages per batch request (`edge.collection_max_messages`).
pub const EDGE_MAX_MESSAGES: usize = 5_000;

/// How one event ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The edge wrote the event to its raw topic (the broker acknowledged it).
    Accepted {
        xaction_id: String,
        batch_id: String,
    },
    /// The edge refused the event: per message in a 207 answer (`batch_id` set), or the whole
    /// request with 400 / 413 (`batch_id` is `None`). Sending it again will not help.
    Refused {
        status_code: u16,
        message: String,
        batch_id: Option<String>,
    },
    /// No answer said what became of the event: retries ran out, the credentials were refused,
    /// the stream is unknown, or the client closed first. Shared by every event of the batch.
    Failed(Arc<ClientError>),
}

impl Outcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted { .. })
    }
}

/// A handle on one sent event; await it for the event's [`Outcome`].
///
/// Dropping a receipt does not cancel the event: it is still delivered and counted.
#[derive(Debug)]
pub struct Receipt {
    id: String,
    rx: oneshot::Receiver<Outcome>,
}

impl Receipt {
    /// The event's `_id` (filled in by the client when the event had none).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Future for Receipt {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            // The sender only goes away without an answer when the background task is gone
            // (its runtime shut down).
            r.unwrap_or_else(|_| Outcome::Failed(Arc::new(ClientError::Closed)))
        })
    }
}

/// The client's counters, in events (`retries` and `batches` in requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events taken by `send` / `try_send`.
    pub sent: u64,
    pub accepted: u64,
    pub refused: u64,
    pub failed: u64,
    /// Requests sent again (after 408/429/5xx, a connection error, or a refused token; or with
    /// the messages a 207 answered 429/503, which the edge did not write).
    pub retries: u64,
    /// Requests that got a final answer (or gave up).
    pub batches: u64,
    /// Events held by the client now: sent but not settled. Never more than the buffer.
    pub buffered: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    pub batches: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    edge_url: String,
    stream_id: String,
    org_id: Option<String>,
    dataset_id: Option<String>,
    schema_id: Option<String>,
    schema_version: Option<u32>,
    auth: Auth,
    token_days: u32,
    batch_size: usize,
    max_batch_bytes: usize,
    linger: Duration,
    buffer: usize,
    max_in_flight: usize,
    retry: RetryPolicy,
    timeout: Duration,
    sync_validation: bool,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// The org of the events (`header.imsOrgId`). Without it the edge fills in the stream's.
    pub fn org_id(mut self, org_id: impl Into<String>) -> Self {
        self.org_id = Some(org_id.into());
        self
    }

    /// The dataset (`header.datasetId`). Without it the events go to the stream's dataset.
    pub fn dataset_id(mut self, dataset_id: impl Into<String>) -> Self {
        self.dataset_id = Some(dataset_id.into());
        self
    }

    /// The XDM schema of the events (`schemaRef.id`), required: the edge refuses a message
    /// without one. It must be the dataset's schema.
    pub fn schema_id(mut self, schema_id: impl Into<String>) -> Self {
        self.schema_id = Some(schema_id.into());
        self
    }

    /// The schema version (`schemaRef.contentType` `…;version=N`); the latest when not set.
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = Some(version);
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Days of validity asked for the access tokens of [`Auth::ApiKey`] (default 1).
    pub fn token_days(mut self, days: u32) -> Self {
        self.token_days = days;
        self
    }

    /// Events per request at most (default 100; at most [`EDGE_MAX_MESSAGES`], the edge's
    /// default cap, which refuses a larger batch whole).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Bytes per request at most (default the edge's 1 MB). A single event larger than this is
    /// still sent alone, and comes back `Refused` with 413.
    pub fn max_batch_bytes(mut self, n: usize) -> Self {
        self.max_batch_bytes = n;
        self
    }

    /// How long a batch waits for more events after its first (default 200 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Events the client holds at most, sent but not settled (default 10 000). When full,
    /// `send` waits and `try_send` fails: back-pressure instead of unbounded memory.
    pub fn buffer(mut self, n: usize) -> Self {
        self.buffer = n;
        self
    }

    /// Requests in flight at once (default 1, which keeps batches in order; more gives more
    /// throughput, with batches landing in any order).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Retries of a request after 408 / 429 / 5xx or a connection error (default 8).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.retry.max_retries = n;
        self
    }

    /// The back-off: the first ceiling, doubled on every retry up to `max` (defaults 100 ms and
    /// 30 s), with full jitter.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.retry.base = base;
        self.retry.max = max;
        self
    }

    /// Timeout of one request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Asks the edge to validate every event against its schema now (`?syncValidation=true`):
    /// invalid events come back `Refused` with the violations instead of being quarantined
    /// later. Costs the edge CPU; meant for development.
    pub fn sync_validation(mut self, on: bool) -> Self {
        self.sync_validation = on;
        self
    }

    /// A `reqwest::Client` of your own (proxies, TLS settings); its timeouts apply.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Starts the client's background task on the current Tokio runtime.
    pub fn build(self) -> Result<Client, ClientError> {
        let runtime = Handle::try_current().map_err(|_| {
            ClientError::Config("build() must be called inside a Tokio runtime".into())
        })?;
        if self.stream_id.is_empty() {
            return Err(ClientError::Config("the stream id is empty".into()));
        }
        let schema_id = self.schema_id.filter(|s| !s.is_empty()).ok_or_else(|| {
            ClientError::Config(
                "schema_id is required: the edge refuses messages without schemaRef.id".into(),
            )
        })?;
        for (name, value) in [
            ("batch_size", self.batch_size),
            ("buffer", self.buffer),
            ("max_in_flight", self.max_in_flight),
            ("max_batch_bytes", self.max_batch_bytes),
        ] {
            if value == 0 {
                return Err(ClientError::Config(format!("{name} must be at least 1")));
            }
        }
        if self.batch_size > EDGE_MAX_MESSAGES {
            return Err(ClientError::Config(format!(
                "batch_size must be at most {EDGE_MAX_MESSAGES}: the edge refuses larger batches whole"
            )));
        }
        if self.token_days == 0 {
            return Err(ClientError::Config("token_days must be at least 1".into()));
        }
        if self.buffer > Semaphore::MAX_PERMITS {
            return Err(ClientError::Config(format!(
                "buffer must be at most {}",
                Semaphore::MAX_PERMITS
            )));
        }
        let mut url = join(&self.edge_url, &["collection", "batch", &self.stream_id])?;
        if self.sync_validation {
            url.set_query(Some("syncValidation=true"));
        }
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("cdp-client/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?,
        };
        let envelope = Envelope {
            schema_ref: SchemaRef {
                id: schema_id,
                content_type: self
                    .schema_version
                    .map(|v| format!("application/vnd.adobe.xed-full+json;version={v}")),
            },
            org_id: self.org_id,
            dataset_id: self.dataset_id,
            size_hint: AtomicUsize::new(0),
        };
        let credentials = Credentials::new(self.auth, self.token_days)?;
        let counters = Arc::new(Counters::default());
        let permits = Arc::new(Semaphore::new(self.buffer));
        // Unbounded, because the semaphore already bounds what is in it: every event holds a
        // permit until it is settled.
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Worker::new(
            rx,
            WorkerConfig {
                http,
                url,
                credentials,
                retry: self.retry,
                batch_size: self.batch_size,
                max_batch_bytes: self.max_batch_bytes,
                linger: self.linger,
                max_in_flight: self.max_in_flight,
            },
            counters.clone(),
        );
        let task = runtime.spawn(worker.run());
        Ok(Client {
            inner: Arc::new(Inner {
                tx,
                permits,
                capacity: self.buffer,
                counters,
                envelope,
                task: std::sync::Mutex::new(Some(task)),
            }),
        })
    }
}

/// The SDK's client: cheap to clone (every clone feeds the same background task).
///
/// Dropping the last clone lets the background task deliver what it holds and stop, but
/// nothing waits for it: call [`Client::close`] (or [`Client::close_blocking`]) before the
/// program or the runtime ends.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::UnboundedSender<Command>,
    permits: Arc<Semaphore>,
    capacity: usize,
    counters: Arc<Counters>,
    envelope: Envelope,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("capacity", &self.inner.capacity)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder for a client of stream `stream_id` (the connection id) on the edge at
    /// `edge_url` (e.g. `http://127.0.0.1:8080`).
    pub fn builder(edge_url: impl Into<String>, stream_id: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            edge_url: edge_url.into(),
            stream_id: stream_id.into(),
            org_id: None,
            dataset_id: None,
            schema_id: None,
            schema_version: None,
            auth: Auth::None,
            token_days: 1,
            batch_size: 100,
            max_batch_bytes: EDGE_MAX_BODY_BYTES,
            linger: Duration::from_millis(200),
            buffer: 10_000,
            max_in_flight: 1,
            retry: RetryPolicy {
                max_retries: 8,
                base: Duration::from_millis(100),
                max: Duration::from_secs(30),
            },
            timeout: Duration::from_secs(30),
            sync_validation: false,
            http: None,
        }
    }

    /// Queues an event, waiting while the buffer is full. The event's `_id` and `timestamp`
    /// are filled in when missing. Fails only for an event that is not a JSON object or a
    /// closed client; delivery problems are in the receipt's outcome.
    pub async fn send(&self, event: impl Into<Event>) -> Result<Receipt, ClientError> {
        let prepared = self.inner.envelope.prepare(event.into())?;
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            // The semaphore is closed by `close`.
            .map_err(|_| ClientError::Closed)?;
        self.enqueue(prepared, permit)
    }

    /// Like [`Client::send`] without waiting: [`ClientError::Full`] when the buffer is full
    /// (the event is dropped; keep a clone to send it later).
    pub fn try_send(&self, event: impl Into<Event>) -> Result<Receipt, ClientError> {
        let prepared = self.inner.envelope.prepare(event.into())?;
        let permit = match self.inner.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => {
                return Err(ClientError::Full {
                    capacity: self.inner.capacity,
                })
            }
            Err(TryAcquireError::Closed) => return Err(ClientError::Closed),
        };
        self.enqueue(prepared, permit)
    }

    fn enqueue(
        &self,
        prepared: crate::event::Prepared,
        permit: OwnedSemaphorePermit,
    ) -> Result<Receipt, ClientError> {
        let (reply, rx) = oneshot::channel();
        let id = prepared.id;
        self.inner
            .tx
            .send(Command::Event(Pending {
                json: prepared.json,
                reply,
                _permit: permit,
            }))
            .map_err(|_| ClientError::Closed)?;
        Counters::add(&self.inner.counters.sent, 1);
        Ok(Receipt { id, rx })
    }

    /// Sends what is waiting for its batch to fill now, and returns once every event sent
    /// before this call is settled (its receipt has its outcome).
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Flush(Waiter::Async(tx)))
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Flushes and stops: every event sent before is settled, `send` fails with
    /// [`ClientError::Closed`] from now on (also on the other clones), and the background task
    /// has ended when this returns. Closing twice is fine.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.inner.permits.close();
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .tx
            .send(Command::Close(Waiter::Async(tx)))
            .is_ok()
        {
            // An error here means the task ended without answering: closed already.
            let _ = rx.await;
        }
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            // A task that panicked has failed its events' receipts already (their senders
            // were dropped); nothing more to report.
            let _ = task.await;
        }
        Ok(())
    }

    /// [`Client::close`] for code that cannot `.await` (a `Drop` implementation, a shutdown
    /// hook), waiting at most `timeout`.
    ///
    /// Works outside any runtime (the background task keeps running on the runtime the
    /// client was built on, which must still be alive) and on a multi-thread runtime (the
    /// thread is handed over with `block_in_place`). On a current-thread runtime it returns
    /// [`ClientError::WouldBlock`] instead of deadlocking: the background task could not run
    /// while this thread waits.
    pub fn close_blocking(&self, timeout: Duration) -> Result<(), ClientError> {
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::CurrentThread => {
                Err(ClientError::WouldBlock(
                    "close_blocking on a current-thread runtime would stop the client's own task; use close().await"
                        .into(),
                ))
            }
            Ok(_) => tokio::task::block_in_place(|| self.wait_closed(timeout)),
            Err(_) => self.wait_closed(timeout),
        }
    }

    fn wait_closed(&self, timeout: Duration) -> Result<(), ClientError> {
        self.inner.permits.close();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self
            .inner
            .tx
            .send(Command::Close(Waiter::Blocking(tx)))
            .is_err()
        {
            return Ok(());
        }
        match rx.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(ClientError::Timeout(timeout)),
            // The task ended without answering: its runtime is gone, and with it the events
            // it held (their receipts say Failed(Closed)).
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(ClientError::Closed),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            sent: get(&c.sent),
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            failed: get(&c.failed),
            retries: get(&c.retries),
            batches: get(&c.batches),
            buffered: self
                .inner
                .capacity
                .saturating_sub(self.inner.permits.available_permits())
                as u64,
        }
    }
}

/// `base` with `segments` appended as path segments (percent-encoded), keeping any path
/// prefix of `base` (an edge behind a proxy at `https://host/cdp`).
pub(crate) fn join(base: &str, segments: &[&str]) -> Result<Url, ClientError> {
    let mut url =
        Url::parse(base).map_err(|e| ClientError::Config(format!("invalid URL {base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::Config(format!(
            "invalid URL {base:?}: only http and https are supported"
        )));
    }
    url.path_segments_mut()
        .map_err(|()| ClientError::Config(format!("invalid URL {base:?}: it cannot be a base")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The message of an error answer: a problem document's `detail` (or `title` / `message`),
/// else the body's text, cut to a length fit for a log line.
pub(crate) fn problem_detail(body: &[u8]) -> String {
    const MAX: usize = 1000;
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| {
            ["detail", "message", "title"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()))
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    if text.len() <= MAX {
        return text;
    }
    let mut cut = MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_prefix_and_encode_the_stream() {
        assert_eq!(
            join("http://h:8080", &["collection", "batch", "s1"])
                .unwrap()
                .as_str(),
            "http://h:8080/collection/batch/s1"
        );
        assert_eq!(
            join("https://h/cdp/", &["collection", "batch", "a/b c"])
                .unwrap()
                .as_str(),
            "https://h/cdp/collection/batch/a%2Fb%20c"
        );
        assert!(matches!(
            join("mailto:x@y", &["t"]),
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            join("not a url", &["t"]),
            Err(ClientError::Config(_))
        ));
    }

    #[test]
    fn problem_details() {
        assert_eq!(
            problem_detail(br#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"x-gw-ims-org-id other"}"#),
            "x-gw-ims-org-id other"
        );
        assert_eq!(problem_detail(b"  plain  "), "plain");
        let long = "é".repeat(1000);
        let cut = problem_detail(long.as_bytes());
        assert!(cut.ends_with('…') && cut.len() <= 1004);
    }
}
