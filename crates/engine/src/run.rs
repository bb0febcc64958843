//! Starts the engine (`cdp engine`, and part of `cdp profile` and `cdp up`): one consumer
//! group on `profile.resolved`, its output topics created if missing, the membership schema
//! registered.

use cdp_catalog::CatalogView;
use cdp_contract::admin::{ensure_topics, AdminError, TopicSpec};
use cdp_contract::{KafkaSettings, Topics};
use cdp_stage::{Lineage, StageError, StageSpec, StateReader};
use tokio::sync::watch;

use crate::avro::{AvroError, MembershipAvro};
use crate::definitions::Definitions;
use crate::settings::EngineSettings;
use crate::stage::{Engine, OutputTopics};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error("cannot create the engine's topics: {0}")]
    Topics(#[from] AdminError),
    #[error("cannot follow the schemas log: {0}")]
    Schemas(#[from] cdp_registry::confluent::SchemaLogError),
    #[error(transparent)]
    Avro(#[from] AvroError),
}

/// The topics the engine reads and writes (besides the changelog and checkpoints the runtime
/// creates), keyed ones with as many partitions as `profile.resolved`; `profile.sequence`
/// (where merges hand content back) is partitioned by sandbox.
pub fn topic_specs(topics: &Topics, partitions: i32, sequence_partitions: i32) -> Vec<TopicSpec> {
    let mut specs: Vec<TopicSpec> = [
        topics.profile_resolved(),
        topics.profile_updates(),
        topics.segment_membership(),
        topics.segment_membership_json(),
        topics.segment_exports(),
    ]
    .into_iter()
    .map(|name| TopicSpec {
        name,
        partitions,
        compacted: false,
    })
    .collect();
    specs.push(TopicSpec {
        name: topics.profile_sequence(),
        partitions: sequence_partitions.max(1),
        compacted: false,
    });
    specs
}

/// `queries`: the reader the query API reads the state through, if it is served.
pub fn spec(topics: &Topics, settings: &EngineSettings, queries: Option<StateReader>) -> StageSpec {
    StageSpec {
        stage: "engine",
        group_id: settings.group_id.clone(),
        instance: settings.instance_id.clone(),
        transactional_id: format!("{}-engine-{}", topics.namespace, settings.instance_id),
        input: topics.profile_resolved(),
        outputs: vec![
            topics.profile_updates(),
            topics.profile_sequence(),
            topics.segment_membership(),
            topics.segment_membership_json(),
            topics.segment_exports(),
        ],
        checkpoints: topics.checkpoints("engine"),
        changelog: Some(topics.engine_changelog()),
        lineage: Lineage::INPUT,
        settings: settings.runtime.clone(),
        queries,
    }
}

/// Runs the engine until `shutdown` turns true or it fails; its state is readable through
/// `queries` (for [`crate::query`]).
pub async fn run(
    kafka: &KafkaSettings,
    topics: &Topics,
    settings: &EngineSettings,
    catalog: CatalogView,
    queries: Option<StateReader>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), EngineError> {
    ensure_topics(
        kafka,
        &topic_specs(topics, settings.partitions, settings.sequence_partitions),
    )
    .await?;
    let sequence_partitions =
        cdp_contract::admin::partition_count(kafka, &topics.profile_sequence()).await?;
    let log = cdp_registry::confluent::SchemaLog::start(kafka, topics).await?;
    let avro = MembershipAvro::register(&log, &topics.segment_membership()).await?;
    tracing::info!(schema_id = avro.id(), subject = %format!("{}-value", topics.segment_membership()), "membership schema registered");
    let engine = Engine {
        catalog,
        definitions: Definitions::new(settings.keep_event_fields.clone()),
        avro,
        topics: OutputTopics {
            updates: topics.profile_updates(),
            sequence: topics.profile_sequence(),
            sequence_partitions,
            membership: topics.segment_membership(),
            membership_json: topics.segment_membership_json(),
            exports: topics.segment_exports(),
        },
        settings: settings.clone(),
    };
    cdp_stage::run(kafka, spec(topics, settings, queries), engine, shutdown).await?;
    Ok(())
}
