//! Where control reads profiles: from the instances that hold them (Kafka Streams' interactive
//! queries), not from a copy of its own. An identity goes to the identity owner of its sandbox
//! (the instance holding the partition of `profile.sequence` the sandbox is placed on,
//! [`cdp_contract::partition::for_sandbox`], where its graph lives); a profile goes to the
//! engine instance holding the partition of `profile.resolved` its id hashes to
//! ([`cdp_contract::partition::for_key`]). Who holds what comes from `<ns>.endpoints`
//! ([`Endpoints`]), which every such instance keeps current.
//!
//! A claim can be stale for a moment (a rebalance, a crash): an instance that does not hold the
//! partition answers 421, and the lookup tries the other claimants, then asks again until
//! [`Lookups::WAIT`] has passed; then it fails with [`LookupError::Unavailable`], which the APIs
//! answer 503 with `Retry-After`. Control's memory does not grow with the number of profiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cdp_contract::admin::partitions_of;
use cdp_contract::endpoints::Endpoints;
use cdp_contract::follower::{FollowError, Follower};
use cdp_contract::partition::sandbox_key;
use cdp_contract::records::lookup::{
    EventsPage, HistoryLookup, IdentityLookup, ProfileLookup, Tallies,
};
use cdp_contract::records::Identity;
use cdp_contract::{KafkaSettings, Topics};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no {stage} instance answers for partition {partition} now (it may be starting or rebalancing); try again")]
    Unavailable { stage: &'static str, partition: i32 },
    #[error("the {stage} instance at {url} answered {status}: {body}")]
    Failed {
        stage: &'static str,
        url: String,
        status: u16,
        body: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LookupsError {
    #[error("cannot create the metadata client: {0}")]
    Client(KafkaError),
    #[error("cannot read the partitions of {topic}: {source}")]
    Metadata { topic: String, source: KafkaError },
    #[error("the topic {0} does not exist (the stages create it; control too, at start)")]
    MissingTopic(String),
    #[error("the partition lookup of {0} did not finish")]
    Lookup(String),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("cannot create the HTTP client: {0}")]
    Http(reqwest::Error),
}

const ENGINE: &str = "engine";
const IDENTITY: &str = "identity";

/// Lookups of profiles and identities, cheap to clone.
#[derive(Clone)]
pub struct Lookups {
    endpoints: Follower<Endpoints>,
    http: reqwest::Client,
    token: Arc<str>,
}

impl Lookups {
    /// How long a lookup keeps asking while no instance answers for the partition.
    pub const WAIT: Duration = Duration::from_secs(5);

    /// Follows `<ns>.endpoints` (which must exist); `token` is the operator's, which the query
    /// APIs ask for.
    pub async fn start(
        kafka: &KafkaSettings,
        topics: &Topics,
        token: Arc<str>,
    ) -> Result<Self, LookupsError> {
        let topic = topics.endpoints();
        let client: BaseConsumer = kafka
            .admin("cdp-lookups-metadata")
            .create()
            .map_err(LookupsError::Client)?;
        let name = topic.clone();
        let partitions = tokio::task::spawn_blocking(move || partitions_of(&client, &name))
            .await
            .map_err(|_| LookupsError::Lookup(topic.clone()))?
            .map_err(|source| LookupsError::Metadata {
                topic: topic.clone(),
                source,
            })?;
        if partitions.is_empty() {
            return Err(LookupsError::MissingTopic(topic));
        }
        let endpoints = Follower::start(kafka, &topic, &partitions, "cdp-endpoints")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(LookupsError::Http)?;
        Ok(Self {
            endpoints,
            http,
            token,
        })
    }

    /// The profile holding `identity` in the sandbox, and its identities.
    pub async fn identity(
        &self,
        org: &str,
        sandbox: &str,
        identity: &Identity,
    ) -> Result<Option<IdentityLookup>, LookupError> {
        let query = identity_query(org, sandbox, identity);
        let at = sandbox_key(org, sandbox);
        self.ask(IDENTITY, &at, "/internal/identity/members", &query)
            .await
    }

    /// The graph changes of the profile holding `identity` and those naming it.
    pub async fn history(
        &self,
        org: &str,
        sandbox: &str,
        identity: &Identity,
    ) -> Result<Option<HistoryLookup>, LookupError> {
        let query = identity_query(org, sandbox, identity);
        let at = sandbox_key(org, sandbox);
        self.ask(IDENTITY, &at, "/internal/identity/history", &query)
            .await
    }

    /// What the engine holds of a profile.
    pub async fn profile(
        &self,
        org: &str,
        sandbox: &str,
        profile_id: &str,
    ) -> Result<Option<ProfileLookup>, LookupError> {
        let query = vec![
            ("org", org.to_string()),
            ("sandbox", sandbox.to_string()),
            ("id", profile_id.to_string()),
        ];
        self.ask(ENGINE, profile_id, "/internal/engine/profile", &query)
            .await
    }

    /// A page of a profile's events, newest first, below `start` (`(timestamp, id)`).
    pub async fn events(
        &self,
        org: &str,
        sandbox: &str,
        profile_id: &str,
        start: Option<&(i64, String)>,
        limit: usize,
    ) -> Result<Option<EventsPage>, LookupError> {
        let mut query = vec![
            ("org", org.to_string()),
            ("sandbox", sandbox.to_string()),
            ("id", profile_id.to_string()),
            ("limit", limit.to_string()),
        ];
        if let Some((ts, id)) = start {
            query.push(("start", format!("{ts}:{id}")));
        }
        self.ask(ENGINE, profile_id, "/internal/engine/events", &query)
            .await
    }

    /// Every segment's tally, summed over the engine's partitions (each asked of its freshest
    /// owner). Partitions no instance answers for are left out (and logged): this is for
    /// people watching the dashboard.
    pub async fn tallies(&self) -> Tallies {
        let groups: std::collections::BTreeMap<String, Vec<i32>> = {
            let endpoints = self.endpoints.read();
            let mut groups = std::collections::BTreeMap::<String, Vec<i32>>::new();
            for p in 0..endpoints.partition_count(ENGINE).unwrap_or(0) {
                match endpoints.owners(ENGINE, p).first() {
                    Some(owner) => groups.entry(owner.url.clone()).or_default().push(p),
                    None => tracing::debug!(
                        partition = p,
                        "no engine instance claims the partition: its tallies are left out"
                    ),
                }
            }
            groups
        };
        let mut out = Tallies::new();
        for (url, partitions) in groups {
            let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
            let resp = self
                .http
                .get(format!("{url}/internal/engine/tallies"))
                .query(&[("partitions", list.join(","))])
                .bearer_auth(&self.token)
                .send()
                .await;
            let tallies = match resp {
                Ok(r) if r.status() == StatusCode::OK => r.json::<Tallies>().await.ok(),
                Ok(r) => {
                    tracing::debug!(
                        url,
                        status = r.status().as_u16(),
                        "an engine instance did not give its tallies"
                    );
                    None
                }
                Err(e) => {
                    tracing::debug!(url, error = %e, "an engine instance does not answer");
                    None
                }
            };
            for (segment, tally) in tallies.into_iter().flatten() {
                out.entry(segment).or_default().add(&tally);
            }
        }
        out
    }

    /// Asks the instance of `stage` that holds the partition of `key` (by the partition count
    /// its instances advertise); `None` for a 404.
    async fn ask<T: DeserializeOwned>(
        &self,
        stage: &'static str,
        key: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>, LookupError> {
        let deadline = Instant::now() + Self::WAIT;
        let mut partition = 0;
        loop {
            let urls: Vec<String> = {
                let endpoints = self.endpoints.read();
                partition = endpoints.partition_count(stage).map_or(partition, |n| {
                    cdp_contract::partition::for_key(key.as_bytes(), n)
                });
                endpoints
                    .owners(stage, partition)
                    .into_iter()
                    .map(|e| e.url.clone())
                    .collect()
            };
            for url in urls {
                let sent = self
                    .http
                    .get(format!("{url}{path}"))
                    .query(query)
                    .bearer_auth(&self.token)
                    .send()
                    .await;
                let resp = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(stage, url, error = %e, "a query instance does not answer; trying the next");
                        continue;
                    }
                };
                match resp.status() {
                    StatusCode::OK => {
                        return resp
                            .json::<T>()
                            .await
                            .map(Some)
                            .map_err(|e| LookupError::Failed {
                                stage,
                                url,
                                status: 200,
                                body: format!("an answer that cannot be read: {e}"),
                            })
                    }
                    StatusCode::NOT_FOUND => return Ok(None),
                    StatusCode::MISDIRECTED_REQUEST | StatusCode::SERVICE_UNAVAILABLE => continue,
                    other => {
                        let body = resp.text().await.unwrap_or_default();
                        return Err(LookupError::Failed {
                            stage,
                            url,
                            status: other.as_u16(),
                            body,
                        });
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(LookupError::Unavailable { stage, partition });
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

fn identity_query(org: &str, sandbox: &str, identity: &Identity) -> Vec<(&'static str, String)> {
    vec![
        ("org", org.to_string()),
        ("sandbox", sandbox.to_string()),
        ("ns", identity.ns.clone()),
        ("id", identity.id.clone()),
    ]
}
