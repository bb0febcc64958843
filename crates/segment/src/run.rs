//! Runs the segment stage (`cdp segment`): one consumer group on `profile.updates`.

use cdp_catalog::CatalogView;
use cdp_contract::admin::{ensure_topics, AdminError, TopicSpec};
use cdp_contract::{KafkaSettings, Topics};
use cdp_stage::{Lineage, StageError, StageSpec};
use tokio::sync::watch;

use crate::avro::{AvroError, MembershipAvro};
use crate::definitions::Definitions;
use crate::settings::SegmentSettings;
use crate::stage::SegmentStage;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Instance(#[from] cdp_stage::InstanceError),
    #[error("cannot create the membership topics: {0}")]
    Topics(#[from] AdminError),
    #[error("cannot follow the schemas log: {0}")]
    Schemas(#[from] cdp_registry::confluent::SchemaLogError),
    #[error(transparent)]
    Avro(#[from] AvroError),
}

/// The membership topics, with as many partitions as profile.updates.
pub fn topic_specs(topics: &Topics, partitions: i32) -> Vec<TopicSpec> {
    [
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
    .collect()
}

pub fn spec(topics: &Topics, settings: &SegmentSettings, instance: &str) -> StageSpec {
    StageSpec {
        stage: "segment",
        group_id: settings.group_id.clone(),
        instance: instance.to_string(),
        transactional_id: format!("{}-segment-{instance}", topics.namespace),
        input: topics.profile_updates(),
        outputs: vec![
            topics.segment_membership(),
            topics.segment_membership_json(),
            topics.segment_exports(),
        ],
        checkpoints: topics.checkpoints("segment"),
        changelog: Some(topics.segment_changelog()),
        lineage: Lineage::INPUT,
        settings: settings.runtime(),
    }
}

/// Runs the stage until `shutdown` turns true. `partitions`: of profile.updates, for the
/// membership topics it creates.
pub async fn run(
    kafka: &KafkaSettings,
    topics: &Topics,
    settings: &SegmentSettings,
    partitions: i32,
    catalog: CatalogView,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SegmentError> {
    let instance = cdp_stage::instance_id(settings.instance_id.as_deref())?;
    ensure_topics(kafka, &topic_specs(topics, partitions)).await?;
    let log = cdp_registry::confluent::SchemaLog::start(kafka, topics).await?;
    let avro = MembershipAvro::register(&log, &topics.segment_membership()).await?;
    tracing::info!(schema_id = avro.id(), subject = %format!("{}-value", topics.segment_membership()), "membership schema registered");
    let stage = SegmentStage {
        catalog,
        definitions: Definitions::default(),
        avro,
        avro_topic: topics.segment_membership(),
        json_topic: topics.segment_membership_json(),
        exports_topic: topics.segment_exports(),
        lookback_ms: settings.lookback_ms,
        bot_events_per_second: settings.bot_events_per_second,
    };
    cdp_stage::run(kafka, spec(topics, settings, &instance), stage, shutdown).await?;
    Ok(())
}
