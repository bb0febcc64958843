//! Runs the identity stage in front of the profile engine, as its own consumer group on the
//! stage runtime (`cdp profile` runs it with the engine); the intake that feeds it runs inside
//! the validate stage ([`ProfileIntake`]). Its input, profile.sequence, is partitioned by
//! sandbox ([`cdp_contract::partition::for_sandbox`]): each partition's graphs have one owner
//! at a time, and instances share the partitions like any consumer group.

use cdp_catalog::CatalogView;
use cdp_contract::admin::{ensure_topics, partition_count, AdminError, TopicSpec};
use cdp_contract::{KafkaSettings, Topics};
use cdp_stage::{Lineage, StageError, StageSpec, StateReader};
use cdp_xdm::decode::ValueDecoder;
use tokio::sync::watch;

use crate::identity::stage::IdentityStage;
use crate::intake::{FastPath, Intake, Limits, ProfileIntake};
use crate::seen::Seen;
use crate::settings::ProfileSettings;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("the {0} stage: {1}")]
    Stage(&'static str, StageError),
    #[error(transparent)]
    Instance(#[from] cdp_stage::InstanceError),
    #[error("cannot create the profile topics: {0}")]
    Topics(#[from] AdminError),
    #[error(transparent)]
    Registry(#[from] cdp_xdm::decode::DecodeError),
}

/// The topics the intake and identity stages write, besides what the runtime creates
/// (changelogs, checkpoints).
pub fn topic_specs(topics: &Topics, settings: &ProfileSettings) -> Vec<TopicSpec> {
    let one = |name| TopicSpec {
        name,
        partitions: 1,
        compacted: false,
    };
    let by_sandbox = |name| TopicSpec {
        name,
        partitions: settings.identity_partitions.max(1),
        compacted: false,
    };
    let keyed = |name| TopicSpec {
        name,
        partitions: settings.partitions,
        compacted: false,
    };
    vec![
        by_sandbox(topics.profile_sequence()),
        one(topics.identity_graph()),
        keyed(topics.profile_resolved()),
    ]
}

/// The runtime's description of the identity stage.
pub fn spec(topics: &Topics, settings: &ProfileSettings, instance: &str) -> StageSpec {
    let ns = &topics.namespace;
    StageSpec {
        stage: "identity",
        group_id: settings.group("identity"),
        instance: instance.to_string(),
        transactional_id: format!("{ns}-identity-{instance}"),
        input: topics.profile_sequence(),
        outputs: vec![topics.profile_resolved(), topics.identity_graph()],
        checkpoints: topics.checkpoints("identity"),
        changelog: Some(topics.identity_changelog()),
        lineage: Lineage::INPUT,
        settings: settings.runtime(),
        queries: None,
    }
}

/// The partition counts the intake places items by, as the broker has them.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Of profile.sequence (a sandbox's identity owner).
    pub sequence: i32,
    /// Of profile.resolved (a profile's engine partition, for the fast path).
    pub resolved: i32,
}

impl Placement {
    /// Reads both counts (the topics must exist).
    pub async fn of(kafka: &KafkaSettings, topics: &Topics) -> Result<Self, AdminError> {
        Ok(Self {
            sequence: partition_count(kafka, &topics.profile_sequence()).await?,
            resolved: partition_count(kafka, &topics.profile_resolved()).await?,
        })
    }
}

/// The profile intake, for the validate stage to run (`validate.profile_intake`).
pub fn intake(settings: &ProfileSettings, topics: &Topics, placement: Placement) -> ProfileIntake {
    ProfileIntake {
        limits: limits(settings),
        sequence_topic: topics.profile_sequence(),
        sequence_partitions: placement.sequence,
        error_topic: topics.events_error(),
        fast_path: settings.identity_fast_path.then(|| FastPath {
            resolved_topic: topics.profile_resolved(),
            resolved_partitions: placement.resolved,
            seen: Seen::new(crate::seen::SLOTS),
        }),
    }
}

fn limits(settings: &ProfileSettings) -> Limits {
    Limits {
        max_event_bytes: settings.max_event_bytes,
        max_record_bytes: settings.max_record_bytes,
    }
}

/// Runs the identity stage until `shutdown` turns true or it fails; its state is readable
/// through `identity_queries` (for [`crate::identity::query`]).
pub async fn run(
    kafka: &KafkaSettings,
    topics: &Topics,
    settings: &ProfileSettings,
    catalog: CatalogView,
    identity_queries: Option<StateReader>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProfileError> {
    let instance = cdp_stage::instance_id(settings.instance_id.as_deref())?;
    ensure_topics(kafka, &topic_specs(topics, settings)).await?;
    let mut identity_spec = spec(topics, settings, &instance);
    identity_spec.queries = identity_queries;
    let placement = Placement::of(kafka, topics).await?;
    let (resolved_partitions, sequence_partitions) = (placement.resolved, placement.sequence);
    let backfill = crate::identity::backfill::Backfill::new(
        catalog.clone(),
        kafka.clone(),
        topics.events_valid(),
        crate::identity::backfill::SequenceTopic {
            name: topics.profile_sequence(),
            partitions: sequence_partitions,
        },
        settings.keep_event_fields.clone(),
        longest_ttl(&catalog, settings),
        std::sync::Arc::new(Intake {
            catalog: catalog.clone(),
            decoder: ValueDecoder::new(
                &settings.registry_url,
                settings.registry_token.as_deref().unwrap_or_default(),
            )?,
            limits: limits(settings),
        }),
    );
    let identity = IdentityStage {
        resolved_topic: topics.profile_resolved(),
        resolved_partitions,
        sequence_partitions,
        graph_topic: topics.identity_graph(),
        backfill: Some(backfill),
    };
    cdp_stage::run(kafka, identity_spec, identity, shutdown)
        .await
        .map_err(|e| ProfileError::Stage("identity", e))?;
    Ok(())
}

/// How far back profiles may hold events: the engine's time-to-live or the longest a dataset
/// sets, as the catalog says now.
fn longest_ttl(catalog: &CatalogView, settings: &ProfileSettings) -> i64 {
    let datasets = catalog
        .read()
        .datasets
        .values()
        .filter_map(|d| d.profile_event_ttl_days)
        .map(|days| i64::from(days) * crate::settings::ONE_DAY_MS)
        .max()
        .unwrap_or(0);
    settings.ttl_ms().max(datasets)
}
