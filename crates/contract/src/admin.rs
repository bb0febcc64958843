//! Topic creation at stage start-up: each stage makes sure the topics it reads and writes
//! exist, so a fresh cluster works without a separate provisioning step.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::KafkaSettings;

/// What a topic should look like when it has to be created.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Compacted topics keep the latest value per key (catalog, changelogs).
    pub compacted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot create Kafka admin client: {0}")]
    Client(rdkafka::error::KafkaError),
    #[error("cannot create topic {topic}: {source}")]
    Create {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create topic {topic}: {code}")]
    CreateCode {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("cannot read the partitions of {topic}: {source}")]
    Metadata {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("the topic {topic} does not exist")]
    MissingTopic { topic: String },
    #[error("the partition lookup of {topic} did not finish")]
    Lookup { topic: String },
}

/// How many partitions `topic` has (it must exist): a metadata request off the async threads.
pub async fn partition_count(settings: &KafkaSettings, topic: &str) -> Result<i32, AdminError> {
    let client: rdkafka::consumer::BaseConsumer = settings
        .admin("cdp-metadata")
        .create()
        .map_err(AdminError::Client)?;
    let name = topic.to_string();
    let found = tokio::task::spawn_blocking(move || partitions_of(&client, &name))
        .await
        .map_err(|_| AdminError::Lookup {
            topic: topic.to_string(),
        })?
        .map_err(|source| AdminError::Metadata {
            topic: topic.to_string(),
            source,
        })?;
    if found.is_empty() {
        return Err(AdminError::MissingTopic {
            topic: topic.to_string(),
        });
    }
    Ok(found.len() as i32)
}

/// Creates the topics that do not exist yet; existing topics are left as they are.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<(), AdminError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .admin("cdp-admin")
        .create()
        .map_err(AdminError::Client)?;
    // A topic named twice (stages started together list the topics they share) is asked for
    // once: a broker refuses a request that names a topic twice.
    let mut seen = std::collections::HashSet::new();
    let specs: Vec<&TopicSpec> = specs.iter().filter(|s| seen.insert(&s.name)).collect();
    let configs: Vec<Vec<(&str, &str)>> = specs
        .iter()
        .map(|s| {
            if s.compacted {
                vec![("cleanup.policy", "compact")]
            } else {
                vec![]
            }
        })
        .collect();
    let topics: Vec<NewTopic> = specs
        .iter()
        .zip(&configs)
        .map(|(s, cfg)| {
            let mut t = NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(-1));
            for (k, v) in cfg {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(|source| AdminError::Create {
            topic: specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::CreateCode { topic, code }),
        }
    }
    Ok(())
}

/// The partition ids of `topic` as the broker reports them now (none when it does not exist).
/// Blocking: call it off the async threads.
pub fn partitions_of<C: rdkafka::consumer::ConsumerContext>(
    client: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<i32>, rdkafka::error::KafkaError> {
    use rdkafka::consumer::Consumer;
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}
