//! Where a stage's state can be read: every instance of a stage that answers queries where its
//! state lives (the profile engine, the identity owner) advertises, on the compacted
//! `<ns>.endpoints` topic, the input partitions it holds and the address of its query API;
//! control follows the topic ([`Endpoints`]) and sends a lookup to the instance that owns the
//! key's partition (Kafka Streams' interactive queries, with the assignment published by the
//! instances themselves rather than read from the group coordinator, which works on every
//! broker).
//!
//! An instance publishes its claim ([`Endpoint`]) when the partitions it holds change (after
//! their state is restored) and an empty one when it stops. One that dies without a word
//! leaves its claim until the partitions' new owner publishes a fresher one; control tries the
//! freshest claimant first and the others after an answer that the partition is not held there.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::follower::Fold;
use crate::KafkaSettings;

/// One instance's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The stage (`engine`, `identity`).
    pub stage: String,
    pub instance: String,
    /// The base address of its query API, e.g. `http://10.0.0.7:9470`.
    pub url: String,
    /// The input partitions whose state it holds, restored.
    pub partitions: Vec<i32>,
    /// How many partitions its input topic has: what a key's partition is computed against.
    pub partition_count: i32,
    /// When it made the claim (epoch ms): the freshest claim of a partition wins.
    pub time_ms: i64,
}

impl Endpoint {
    /// The record key: one per stage and instance.
    pub fn key(&self) -> String {
        format!("{}/{}", self.stage, self.instance)
    }
}

/// The fold of the endpoints topic.
#[derive(Debug, Default)]
pub struct Endpoints {
    by_key: HashMap<String, Endpoint>,
}

impl Fold for Endpoints {
    fn apply(&mut self, _: i32, _: i64, key: &str, value: Option<&[u8]>) {
        match value.map(serde_json::from_slice::<Endpoint>) {
            Some(Ok(e)) => {
                self.by_key.insert(key.to_string(), e);
            }
            Some(Err(error)) => {
                tracing::warn!(key, %error, "skipping an endpoint record that cannot be read")
            }
            None => {
                self.by_key.remove(key);
            }
        }
    }
}

impl Endpoints {
    /// The instances of `stage` that claim `partition`, the freshest claim first.
    pub fn owners(&self, stage: &str, partition: i32) -> Vec<&Endpoint> {
        let mut found: Vec<&Endpoint> = self
            .by_key
            .values()
            .filter(|e| e.stage == stage && e.partitions.contains(&partition))
            .collect();
        found.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then_with(|| a.url.cmp(&b.url)));
        found
    }

    /// The partition count `stage`'s instances report (the freshest claim's).
    pub fn partition_count(&self, stage: &str) -> Option<i32> {
        self.by_key
            .values()
            .filter(|e| e.stage == stage && e.partition_count > 0)
            .max_by_key(|e| e.time_ms)
            .map(|e| e.partition_count)
    }
}

/// What an instance advertises about itself.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub stage: String,
    pub instance: String,
    pub url: String,
    pub partition_count: i32,
}

/// Publishes `me`'s claim on `topic` whenever `held` changes, and an empty claim when
/// `shutdown` turns true. Runs until then; a publication that fails is tried again with the
/// next change or after a pause.
pub async fn advertise(
    kafka: &KafkaSettings,
    topic: &str,
    me: Advertised,
    mut held: watch::Receiver<BTreeSet<i32>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let producer: FutureProducer = match kafka
        .producer(&format!("cdp-endpoints-{}", me.stage), 10_000)
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(stage = %me.stage, error = %e, "cannot create the endpoint publisher: lookups will not find this instance");
            return;
        }
    };
    let publish = async |partitions: Vec<i32>| -> bool {
        let claim = Endpoint {
            stage: me.stage.clone(),
            instance: me.instance.clone(),
            url: me.url.clone(),
            partitions,
            partition_count: me.partition_count,
            time_ms: now_ms(),
        };
        let Ok(value) = serde_json::to_vec(&claim) else {
            return false;
        };
        let key = claim.key();
        match producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(stage = %me.stage, url = %me.url, partitions = ?claim.partitions, "serving queries for these partitions");
                true
            }
            Err((e, _)) => {
                tracing::warn!(stage = %me.stage, error = %e, "cannot publish where this instance serves queries; trying again");
                false
            }
        }
    };
    let mut published: Option<BTreeSet<i32>> = None;
    loop {
        let now = held.borrow_and_update().clone();
        if published.as_ref() != Some(&now) && publish(now.iter().copied().collect()).await {
            published = Some(now);
        }
        let retry = published.is_none() || published.as_ref() != Some(&*held.borrow());
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            changed = held.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(2)), if retry => {}
        }
    }
    publish(Vec::new()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(instance: &str, partitions: &[i32], time_ms: i64) -> Vec<u8> {
        serde_json::to_vec(&Endpoint {
            stage: "engine".into(),
            instance: instance.into(),
            url: format!("http://{instance}"),
            partitions: partitions.to_vec(),
            partition_count: 3,
            time_ms,
        })
        .expect("json")
    }

    #[test]
    fn the_freshest_claim_of_a_partition_comes_first() {
        let mut e = Endpoints::default();
        e.apply(0, 0, "engine/a", Some(&claim("a", &[0, 1], 10)));
        e.apply(0, 1, "engine/b", Some(&claim("b", &[2], 11)));
        // b takes partition 1 over (a died without a word).
        e.apply(0, 2, "engine/b", Some(&claim("b", &[1, 2], 20)));
        let owners = |e: &Endpoints, p| -> Vec<String> {
            e.owners("engine", p)
                .iter()
                .map(|x| x.instance.clone())
                .collect()
        };
        assert_eq!(owners(&e, 1), ["b", "a"]);
        assert_eq!(owners(&e, 0), ["a"]);
        assert!(e.owners("identity", 0).is_empty());
        assert_eq!(e.partition_count("engine"), Some(3));
        // a stops and says so.
        e.apply(0, 3, "engine/a", Some(&claim("a", &[], 30)));
        assert!(owners(&e, 0).is_empty());
        e.apply(0, 4, "engine/b", None);
        assert!(owners(&e, 2).is_empty());
    }
}
