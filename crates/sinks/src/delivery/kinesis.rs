//! Amazon Kinesis Data Streams: `PutRecords` with aws-sdk-kinesis and static credentials.
//!
//! Records are sent in requests within Kinesis' limits (500 records, 5 MiB counting data and
//! partition keys; a record over 1 MiB is rejected). A request holds at most one record per
//! partition key — Kinesis does not promise the order of entries within one `PutRecords` call,
//! and an entry can fail while a later one succeeds — so the next record of a key is sent only
//! once the previous one is acknowledged. Only the failed entries of a partial failure are sent
//! again (`ProvisionedThroughputExceededException`, `InternalFailure`), after a back-off, and a
//! key whose record failed sends nothing more until that record is through. The SDK's own
//! retries are off: this layer is the one place that retries.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use sha2::{Digest, Sha256};

use super::retry::Backoff;
use super::{
    pending_tail, Deliver, DeliveryError, DeliveryReport, ErrorKind, Fate, OutRecord, Rejected,
    RetryPolicy, Secret,
};

/// At most this many records in one `PutRecords` request.
pub const KINESIS_MAX_RECORDS_PER_REQUEST: usize = 500;
/// At most this many bytes (data and partition keys) in one `PutRecords` request.
pub const KINESIS_MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// At most this many bytes (data and partition key) in one record.
pub const KINESIS_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Partition keys are 1 to 256 Unicode characters; longer ones are replaced by their SHA-256.
const MAX_PARTITION_KEY_CHARS: usize = 256;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and as whom to write: the destination's `stream`, `region` and `accessKeyId` /
/// `secretKey`; `endpoint` (the `connectionUrl`) replaces AWS' own, e.g. for kinesalite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisTarget {
    /// The stream's name, or its ARN.
    pub stream: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_key: Secret,
}

/// Delivers to one Kinesis data stream. Cheap to share: the SDK client pools its connections.
#[derive(Debug, Clone)]
pub struct KinesisClient {
    client: aws_sdk_kinesis::Client,
    target: KinesisTarget,
    policy: RetryPolicy,
}

impl KinesisClient {
    /// Builds the client (no request is made). Fails with [`ErrorKind::Config`] for an empty
    /// stream, region or access key id, or an endpoint that is not an http(s) URL.
    pub fn new(target: KinesisTarget, policy: RetryPolicy) -> Result<KinesisClient, DeliveryError> {
        if target.stream.trim().is_empty() {
            return Err(DeliveryError::config("Kinesis: the stream name is empty"));
        }
        if target.region.trim().is_empty() {
            return Err(DeliveryError::config("Kinesis: the region is empty"));
        }
        if target.access_key_id.trim().is_empty() {
            return Err(DeliveryError::config("Kinesis: the access key id is empty"));
        }
        let credentials = Credentials::new(
            target.access_key_id.trim(),
            target.secret_key.expose(),
            None,
            None,
            "cdp-sinks",
        );
        let mut config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(target.region.trim().to_string()))
            .credentials_provider(credentials)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(endpoint) = &target.endpoint {
            let url = url::Url::parse(endpoint.trim()).map_err(|e| {
                DeliveryError::config(format!("Kinesis: endpoint {endpoint:?} is not a URL: {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(DeliveryError::config(format!(
                    "Kinesis: endpoint {endpoint:?} is not an http(s) URL"
                )));
            }
            config = config.endpoint_url(endpoint.trim());
        }
        Ok(KinesisClient {
            client: aws_sdk_kinesis::Client::from_conf(config.build()),
            target,
            policy,
        })
    }

    /// The SDK client, for what this layer does not wrap (tests read streams back with it).
    pub fn sdk(&self) -> &aws_sdk_kinesis::Client {
        &self.client
    }

    pub fn target(&self) -> &KinesisTarget {
        &self.target
    }

    /// `kinesis:STREAM@REGION`, with the endpoint when it is overridden.
    pub fn describe(&self) -> String {
        match &self.target.endpoint {
            Some(e) => format!(
                "kinesis:{}@{} ({e})",
                self.target.stream, self.target.region
            ),
            None => format!("kinesis:{}@{}", self.target.stream, self.target.region),
        }
    }

    /// `DescribeStreamSummary`: the stream exists and the credentials may see it.
    pub async fn check(&self) -> Result<(), DeliveryError> {
        let request = self.client.describe_stream_summary();
        let request = if is_arn(&self.target.stream) {
            request.stream_arn(&self.target.stream)
        } else {
            request.stream_name(&self.target.stream)
        };
        request.send().await.map(|_| ()).map_err(|e| classify(&e))
    }

    /// Delivers `records`; see the module documentation for how.
    pub async fn deliver(&self, records: Vec<OutRecord>) -> Result<DeliveryReport, DeliveryError> {
        run(&records, self.policy, &SdkPut(self)).await
    }

    async fn put_records(
        &self,
        entries: Vec<PutRecordsRequestEntry>,
    ) -> Result<Vec<EntryResult>, DeliveryError> {
        let request = self.client.put_records().set_records(Some(entries));
        let request = if is_arn(&self.target.stream) {
            request.stream_arn(&self.target.stream)
        } else {
            request.stream_name(&self.target.stream)
        };
        let output = request.send().await.map_err(|e| classify(&e))?;
        Ok(output
            .records()
            .iter()
            .map(|r| match r.error_code() {
                None => EntryResult::Ok,
                Some(code) => EntryResult::Failed {
                    code: code.to_string(),
                    message: r.error_message().unwrap_or_default().to_string(),
                },
            })
            .collect())
    }
}

impl Deliver for KinesisClient {
    fn deliver(
        &self,
        records: Vec<OutRecord>,
    ) -> impl std::future::Future<Output = Result<DeliveryReport, DeliveryError>> + Send {
        KinesisClient::deliver(self, records)
    }
}

fn is_arn(stream: &str) -> bool {
    stream.starts_with("arn:")
}

/// The outcome of one entry of a `PutRecords` request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryResult {
    Ok,
    Failed { code: String, message: String },
}

/// One `PutRecords` call: the seam between the delivery rounds and the SDK, so that the
/// rounds can be tested against a scripted stream.
trait PutRecords {
    /// Sends records `batch` (indices into `records`, with their wire partition keys) and
    /// returns one result per entry, in order — or the error of the whole request.
    fn put(
        &self,
        records: &[OutRecord],
        keys: &[Cow<'_, str>],
        batch: &[usize],
    ) -> impl std::future::Future<Output = Result<Vec<EntryResult>, DeliveryError>> + Send;
}

struct SdkPut<'a>(&'a KinesisClient);

impl PutRecords for SdkPut<'_> {
    async fn put(
        &self,
        records: &[OutRecord],
        keys: &[Cow<'_, str>],
        batch: &[usize],
    ) -> Result<Vec<EntryResult>, DeliveryError> {
        let mut entries = Vec::with_capacity(batch.len());
        for &i in batch {
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(records[i].data.clone()))
                .partition_key(keys[i].as_ref())
                .build()
                .map_err(|e| DeliveryError::config(format!("Kinesis: {e}")))?;
            entries.push(entry);
        }
        self.0.put_records(entries).await
    }
}

/// The delivery rounds. A round sends, key by key, the oldest pending record of every key that
/// has not failed in this round, in requests within the limits, until no such record is left;
/// then, if records failed, it backs off and starts the next round.
async fn run<P: PutRecords>(
    records: &[OutRecord],
    policy: RetryPolicy,
    put: &P,
) -> Result<DeliveryReport, DeliveryError> {
    let mut report = DeliveryReport::default();
    let mut fates = vec![Fate::Pending; records.len()];
    let mut keys: Vec<Cow<'_, str>> = Vec::with_capacity(records.len());
    let mut sizes = Vec::with_capacity(records.len());
    // One queue per partition key, in the order of first appearance.
    let mut queues: Vec<VecDeque<usize>> = Vec::new();
    let mut queue_of: HashMap<&str, usize> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        let key = match wire_partition_key(&record.partition_key) {
            Ok(key) => key,
            Err(reason) => {
                fates[i] = Fate::Rejected;
                report.rejected.push(Rejected { index: i, reason });
                keys.push(Cow::Borrowed(""));
                sizes.push(0);
                continue;
            }
        };
        let size = record.data.len() + key.len();
        keys.push(key);
        sizes.push(size);
        if size > KINESIS_MAX_RECORD_BYTES {
            fates[i] = Fate::Rejected;
            report.rejected.push(Rejected {
                index: i,
                reason: format!(
                    "record is {size} bytes (data and partition key), over Kinesis' limit of \
                     {KINESIS_MAX_RECORD_BYTES} bytes (1 MiB)"
                ),
            });
            continue;
        }
        let q = *queue_of
            .entry(record.partition_key.as_str())
            .or_insert_with(|| {
                queues.push(VecDeque::new());
                queues.len() - 1
            });
        queues[q].push_back(i);
    }

    let mut backoff = Backoff::new(policy);
    let mut tries = vec![0u32; records.len()];
    let progress = |report: &DeliveryReport, fates: &[Fate]| {
        let mut partial = report.clone();
        partial.rejected.sort_by_key(|r| r.index);
        (partial, pending_tail(records, fates))
    };
    loop {
        let mut failed_this_round = vec![false; queues.len()];
        let mut last_error: Option<DeliveryError> = None;
        'round: loop {
            let heads: Vec<(usize, usize)> = queues
                .iter()
                .enumerate()
                .filter(|(q, _)| !failed_this_round[*q])
                .filter_map(|(q, queue)| queue.front().map(|&i| (q, i)))
                .collect();
            if heads.is_empty() {
                break;
            }
            for request in split_requests(&heads, |&(_, i)| sizes[i]) {
                let batch: Vec<usize> = request.iter().map(|&(_, i)| i).collect();
                for &i in &batch {
                    if tries[i] > 0 {
                        report.retried += 1;
                    }
                    tries[i] += 1;
                }
                let results = match put.put(records, &keys, &batch).await {
                    Ok(results) if results.len() == batch.len() => results,
                    Ok(results) => {
                        last_error = Some(DeliveryError::new(
                            ErrorKind::Unavailable,
                            format!(
                                "Kinesis answered {} results for {} records",
                                results.len(),
                                batch.len()
                            ),
                        ));
                        break 'round;
                    }
                    Err(e) if e.is_transient() => {
                        tracing::debug!(error = %e, records = batch.len(), "PutRecords failed; will retry");
                        last_error = Some(e);
                        break 'round;
                    }
                    Err(e) => {
                        let (partial, pending) = progress(&report, &fates);
                        return Err(e.with_progress(partial, pending));
                    }
                };
                for (&(q, i), result) in request.iter().zip(results) {
                    match result {
                        EntryResult::Ok => {
                            queues[q].pop_front();
                            fates[i] = Fate::Delivered;
                            report.delivered += 1;
                        }
                        EntryResult::Failed { code, message } => match entry_outcome(&code) {
                            EntryOutcome::Retry(kind) => {
                                failed_this_round[q] = true;
                                last_error =
                                    Some(DeliveryError::new(kind, format!("{code}: {message}")));
                            }
                            EntryOutcome::Reject => {
                                queues[q].pop_front();
                                fates[i] = Fate::Rejected;
                                report.rejected.push(Rejected {
                                    index: i,
                                    reason: format!("{code}: {message}"),
                                });
                            }
                            EntryOutcome::Fail(kind) => {
                                let (partial, pending) = progress(&report, &fates);
                                return Err(DeliveryError::new(kind, format!("{code}: {message}"))
                                    .with_progress(partial, pending));
                            }
                        },
                    }
                }
            }
        }
        if queues.iter().all(VecDeque::is_empty) {
            report.rejected.sort_by_key(|r| r.index);
            return Ok(report);
        }
        let exhausted = queues
            .iter()
            .filter_map(|q| q.front())
            .any(|&i| !backoff.may_try_again(tries[i]));
        let delay = if exhausted {
            None
        } else {
            backoff.next_delay()
        };
        let Some(delay) = delay else {
            let error = last_error.unwrap_or_else(|| {
                DeliveryError::new(
                    ErrorKind::Unavailable,
                    "Kinesis did not accept every record",
                )
            });
            let message = format!("{} ({})", error.message, backoff.summary());
            let (partial, pending) = progress(&report, &fates);
            return Err(DeliveryError::new(error.kind, message).with_progress(partial, pending));
        };
        tokio::time::sleep(delay).await;
    }
}

/// Splits `items` into consecutive requests of at most 500 entries and 5 MiB.
fn split_requests<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, item) in items.iter().enumerate() {
        let s = size(item);
        let count = i - start;
        if count > 0
            && (count == KINESIS_MAX_RECORDS_PER_REQUEST || bytes + s > KINESIS_MAX_REQUEST_BYTES)
        {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += s;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// The partition key sent to Kinesis: the key itself, or the hex SHA-256 of a key over 256
/// characters (the same key always maps to the same shard). An empty key is refused.
fn wire_partition_key(key: &str) -> Result<Cow<'_, str>, String> {
    if key.is_empty() {
        return Err("empty partition key (Kinesis needs 1 to 256 characters)".into());
    }
    if key.encode_utf16().count() <= MAX_PARTITION_KEY_CHARS {
        Ok(Cow::Borrowed(key))
    } else {
        Ok(Cow::Owned(hex::encode(Sha256::digest(key.as_bytes()))))
    }
}

/// What to do about one failed entry of a `PutRecords` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryOutcome {
    /// Send it again after a back-off.
    Retry(ErrorKind),
    /// The record is refused for good: report it, go on with the others.
    Reject,
    /// The stream itself is unusable (KMS key, access): stop the delivery.
    Fail(ErrorKind),
}

fn entry_outcome(code: &str) -> EntryOutcome {
    match code {
        "ProvisionedThroughputExceededException"
        | "KMSThrottlingException"
        | "ThrottlingException"
        | "LimitExceededException" => EntryOutcome::Retry(ErrorKind::Throttled),
        "InternalFailure" | "InternalFailureException" | "ServiceUnavailable" => {
            EntryOutcome::Retry(ErrorKind::Unavailable)
        }
        "ResourceNotFoundException" => EntryOutcome::Fail(ErrorKind::NotFound),
        c if c.starts_with("KMS") || c == "AccessDeniedException" => {
            EntryOutcome::Fail(ErrorKind::Unauthorized)
        }
        _ => EntryOutcome::Reject,
    }
}

/// The kind of a whole-request error, from the AWS error code and the HTTP status.
fn classify_code(code: Option<&str>, status: u16) -> ErrorKind {
    match code.unwrap_or_default() {
        "ProvisionedThroughputExceededException"
        | "LimitExceededException"
        | "KMSThrottlingException"
        | "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "SlowDown" => ErrorKind::Throttled,
        "InternalFailure"
        | "InternalFailureException"
        | "InternalError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException" => ErrorKind::Unavailable,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "AuthFailure"
        | "NotAuthorized" => ErrorKind::Unauthorized,
        c if c.starts_with("KMS") => ErrorKind::Unauthorized,
        "ResourceNotFoundException" => ErrorKind::NotFound,
        _ => match status {
            429 => ErrorKind::Throttled,
            401 | 403 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Invalid,
        },
    }
}

/// A [`DeliveryError`] for an SDK error, with the service's code and message.
fn classify<E>(error: &SdkError<E>) -> DeliveryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let code = e.err().code();
            let kind = classify_code(code, status);
            let message = match (code, e.err().message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                _ => format!("HTTP {status}: {}", DisplayErrorContext(error)),
            };
            DeliveryError::new(kind, message)
        }
        SdkError::ResponseError(e) => {
            let status = e.raw().status().as_u16();
            let kind = match status {
                429 => ErrorKind::Throttled,
                401 | 403 => ErrorKind::Unauthorized,
                _ => ErrorKind::Unavailable,
            };
            DeliveryError::new(
                kind,
                format!("HTTP {status}: {}", DisplayErrorContext(error)),
            )
        }
        SdkError::TimeoutError(_) => DeliveryError::new(
            ErrorKind::Timeout,
            format!("no answer within {ATTEMPT_TIMEOUT:?}"),
        ),
        SdkError::DispatchFailure(e) => {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else if e.is_user() {
                ErrorKind::Config
            } else {
                ErrorKind::Unavailable
            };
            DeliveryError::new(kind, DisplayErrorContext(error).to_string())
        }
        SdkError::ConstructionFailure(_) => {
            DeliveryError::new(ErrorKind::Config, DisplayErrorContext(error).to_string())
        }
        _ => DeliveryError::new(
            ErrorKind::Unavailable,
            DisplayErrorContext(error).to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn requests_hold_at_most_500_records_and_5_mib() {
        let small = vec![10usize; 1200];
        let parts = split_requests(&small, |s| *s);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [500, 500, 200]
        );
        // Eleven records just under 1 MiB: five fit in 5 MiB.
        let big = vec![KINESIS_MAX_RECORD_BYTES - 10; 11];
        let parts = split_requests(&big, |s| *s);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [5, 5, 1]);
        assert!(split_requests(&[] as &[usize], |s| *s).is_empty());
    }

    #[test]
    fn long_partition_keys_are_hashed_and_empty_ones_refused() {
        assert_eq!(wire_partition_key("p1").unwrap(), "p1");
        let exact = "é".repeat(256);
        assert_eq!(wire_partition_key(&exact).unwrap(), exact);
        let long = "x".repeat(257);
        let hashed = wire_partition_key(&long).unwrap();
        assert_eq!(hashed.len(), 64);
        assert_eq!(hashed, wire_partition_key(&long).unwrap());
        assert!(wire_partition_key("").is_err());
    }

    #[test]
    fn entry_and_request_errors_are_classified() {
        assert_eq!(
            entry_outcome("ProvisionedThroughputExceededException"),
            EntryOutcome::Retry(ErrorKind::Throttled)
        );
        assert_eq!(
            entry_outcome("InternalFailure"),
            EntryOutcome::Retry(ErrorKind::Unavailable)
        );
        assert_eq!(
            entry_outcome("KMSAccessDeniedException"),
            EntryOutcome::Fail(ErrorKind::Unauthorized)
        );
        assert_eq!(entry_outcome("SomethingNew"), EntryOutcome::Reject);

        assert_eq!(
            classify_code(Some("ProvisionedThroughputExceededException"), 400),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify_code(Some("ResourceNotFoundException"), 400),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify_code(Some("UnrecognizedClientException"), 400),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            classify_code(Some("AccessDeniedException"), 400),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            classify_code(Some("ValidationException"), 400),
            ErrorKind::Invalid
        );
        assert_eq!(classify_code(None, 503), ErrorKind::Unavailable);
        assert_eq!(classify_code(None, 429), ErrorKind::Throttled);
    }

    #[test]
    fn constructor_refuses_unusable_targets() {
        let good = KinesisTarget {
            stream: "s".into(),
            region: "eu-west-1".into(),
            endpoint: Some("http://127.0.0.1:4567".into()),
            access_key_id: "id".into(),
            secret_key: Secret::new("secret"),
        };
        assert!(KinesisClient::new(good.clone(), RetryPolicy::default()).is_ok());
        for bad in [
            KinesisTarget {
                stream: " ".into(),
                ..good.clone()
            },
            KinesisTarget {
                region: "".into(),
                ..good.clone()
            },
            KinesisTarget {
                endpoint: Some("not a url".into()),
                ..good.clone()
            },
            KinesisTarget {
                endpoint: Some("ftp://host/".into()),
                ..good.clone()
            },
        ] {
            let e = KinesisClient::new(bad, RetryPolicy::default()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Config, "{e}");
        }
        let debug = format!("{good:?}");
        assert!(!debug.contains("secret\""), "{debug}");
    }

    /// A scripted stream: each call takes the next script entry, a function from the request's
    /// records to what the stream answers; accepted records are appended to `stream`.
    type Script = Box<dyn Fn(&[(String, Vec<u8>)]) -> Result<Vec<bool>, DeliveryError> + Send>;

    struct FakeStream {
        script: Mutex<VecDeque<Script>>,
        stream: Mutex<Vec<(String, Vec<u8>)>>,
        requests: Mutex<Vec<Vec<usize>>>,
    }

    impl FakeStream {
        fn new(script: Vec<Script>) -> FakeStream {
            FakeStream {
                script: Mutex::new(script.into()),
                stream: Mutex::new(Vec::new()),
                requests: Mutex::new(Vec::new()),
            }
        }
    }

    impl PutRecords for FakeStream {
        async fn put(
            &self,
            records: &[OutRecord],
            keys: &[Cow<'_, str>],
            batch: &[usize],
        ) -> Result<Vec<EntryResult>, DeliveryError> {
            self.requests.lock().unwrap().push(batch.to_vec());
            let entries: Vec<(String, Vec<u8>)> = batch
                .iter()
                .map(|&i| (keys[i].to_string(), records[i].data.clone()))
                .collect();
            let step = self.script.lock().unwrap().pop_front();
            let accepted = match step {
                Some(f) => f(&entries)?,
                None => vec![true; entries.len()],
            };
            let mut stream = self.stream.lock().unwrap();
            Ok(entries
                .into_iter()
                .zip(accepted)
                .map(|(entry, ok)| {
                    if ok {
                        stream.push(entry);
                        EntryResult::Ok
                    } else {
                        EntryResult::Failed {
                            code: "ProvisionedThroughputExceededException".into(),
                            message: "Rate exceeded for shard".into(),
                        }
                    }
                })
                .collect())
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
            attempts: 10,
            deadline: Some(Duration::from_secs(10)),
            jitter: 0.5,
        }
    }

    fn records(keys: usize, per_key: usize) -> Vec<OutRecord> {
        let mut out = Vec::new();
        for n in 0..per_key {
            for k in 0..keys {
                out.push(OutRecord::new(format!("k{k}"), format!("k{k}-{n}")));
            }
        }
        out
    }

    /// Every record arrived exactly once and, per key, in order.
    fn assert_exactly_once_in_order(records: &[OutRecord], stream: &[(String, Vec<u8>)]) {
        let mut want: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
        for r in records {
            want.entry(&r.partition_key).or_default().push(&r.data);
        }
        let mut got: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
        for (k, d) in stream {
            got.entry(k).or_default().push(d);
        }
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn partial_failures_retry_only_failed_entries_and_keep_key_order() {
        let records = records(7, 5);
        // First request: every third entry fails. Second: the whole request is throttled.
        // Third: the first two entries fail.
        let fake = FakeStream::new(vec![
            Box::new(|e| Ok((0..e.len()).map(|i| i % 3 != 0).collect())),
            Box::new(|_| {
                Err(DeliveryError::new(
                    ErrorKind::Throttled,
                    "ProvisionedThroughputExceededException: Rate exceeded",
                ))
            }),
            Box::new(|e| Ok((0..e.len()).map(|i| i >= 2).collect())),
        ]);
        let report = run(&records, fast(), &fake).await.unwrap();
        assert_eq!(report.delivered, records.len());
        assert!(report.retried > 0);
        assert!(report.rejected.is_empty());
        assert_exactly_once_in_order(&records, &fake.stream.lock().unwrap());
        // No request carries two records of one key.
        for request in fake.requests.lock().unwrap().iter() {
            let mut keys: Vec<_> = request.iter().map(|&i| &records[i].partition_key).collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), n, "{request:?}");
        }
    }

    #[tokio::test]
    async fn oversized_and_keyless_records_are_rejected_and_the_rest_delivered() {
        let mut records = records(3, 2);
        records.insert(2, OutRecord::new("k1", vec![0u8; KINESIS_MAX_RECORD_BYTES]));
        records.push(OutRecord::new("", b"no key".to_vec()));
        let fake = FakeStream::new(Vec::new());
        let report = run(&records, fast(), &fake).await.unwrap();
        assert_eq!(report.delivered, 6);
        let rejected: Vec<usize> = report.rejected.iter().map(|r| r.index).collect();
        assert_eq!(rejected, [2, 7]);
        assert!(
            report.rejected[0].reason.contains("1 MiB"),
            "{:?}",
            report.rejected
        );
    }

    #[tokio::test]
    async fn a_permanent_error_stops_at_once_with_the_progress_so_far() {
        let records = records(2, 3);
        let fake = FakeStream::new(vec![
            Box::new(|e| Ok(vec![true; e.len()])),
            Box::new(|_| {
                Err(DeliveryError::new(
                    ErrorKind::NotFound,
                    "ResourceNotFoundException: Stream s not found.",
                ))
            }),
        ]);
        let e = run(&records, fast(), &fake).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.partial.delivered, 2);
        assert_eq!(e.pending, [2, 3, 4, 5]);
        assert_eq!(fake.requests.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn throttling_that_outlasts_the_policy_is_a_transient_error() {
        let records = records(2, 2);
        let always: Vec<Script> = (0..20)
            .map(|_| Box::new(|e: &[(String, Vec<u8>)]| Ok(vec![false; e.len()])) as Script)
            .collect();
        let fake = FakeStream::new(always);
        let policy = RetryPolicy {
            attempts: 3,
            ..fast()
        };
        let e = run(&records, policy, &fake).await.unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert!(e.message.contains("gave up after 3 tries"), "{e}");
        assert_eq!(e.pending, [0, 1, 2, 3]);
        assert_eq!(fake.requests.lock().unwrap().len(), 3);
    }
}
