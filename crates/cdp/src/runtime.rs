//! Starts stages: makes sure their topics exist, loads the catalog, binds their listeners and
//! serves until shut down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use cdp_catalog::principal::Authenticator;
use cdp_catalog::tokens::Tokens;
use cdp_catalog::{CatalogError, WriteError};
use cdp_catalog::{CatalogView, CatalogWriter};
use cdp_contract::admin::{ensure_topics, partition_count, AdminError, TopicSpec};
use cdp_contract::endpoints::{advertise, Advertised};
use cdp_control::http::ControlState;
use cdp_edge::EdgeState;
use cdp_stage::StateReader;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::CdpConfig;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no Kafka broker configured: set [kafka] bootstrap_servers or CDP_KAFKA__BOOTSTRAP_SERVERS (`make run` starts a development broker)")]
    NoBroker,
    #[error(transparent)]
    Topics(#[from] AdminError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    CatalogWriter(#[from] WriteError),
    #[error(transparent)]
    Edge(#[from] cdp_edge::produce::ProduceError),
    #[error(transparent)]
    Lake(#[from] cdp_lake::LakeError),
    #[error(transparent)]
    Registry(#[from] cdp_registry::RegistryError),
    #[error(transparent)]
    Lookups(#[from] cdp_control::profiles::LookupsError),
    #[error("control.secret_key (CDP_CONTROL__SECRET_KEY): {0}")]
    SecretKey(#[from] cdp_catalog::SecretError),
    #[error("cannot follow the flow statuses: {0}")]
    FlowRuns(#[from] cdp_contract::follower::FollowError),
    #[error(transparent)]
    Instance(#[from] cdp_stage::InstanceError),
    #[error(transparent)]
    Exposed(#[from] crate::exposure::Exposed),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Which stages this process runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stages {
    pub edge: bool,
    pub control: bool,
    pub validate: bool,
    pub lake: bool,
    /// The identity stage (the profile intake runs inside validate).
    pub profile: bool,
    /// The profile engine: profile state and segments.
    pub engine: bool,
    /// Delivery of the destination flows (Kinesis, Event Hubs, Kafka).
    pub sinks: bool,
}

impl Stages {
    pub const NONE: Stages = Stages {
        edge: false,
        control: false,
        validate: false,
        lake: false,
        profile: false,
        engine: false,
        sinks: false,
    };
    pub const ALL: Stages = Stages {
        edge: true,
        control: true,
        validate: true,
        lake: true,
        profile: true,
        engine: true,
        sinks: true,
    };
    pub const EDGE: Stages = Stages {
        edge: true,
        ..Stages::NONE
    };
    pub const CONTROL: Stages = Stages {
        control: true,
        ..Stages::NONE
    };
    pub const VALIDATE: Stages = Stages {
        validate: true,
        ..Stages::NONE
    };
    /// What `cdp profile` runs: identity and the engine.
    pub const PROFILE: Stages = Stages {
        profile: true,
        engine: true,
        ..Stages::NONE
    };
    /// Identity alone (the engine runs elsewhere).
    pub const IDENTITY: Stages = Stages {
        profile: true,
        ..Stages::NONE
    };
    pub const ENGINE: Stages = Stages {
        engine: true,
        ..Stages::NONE
    };
    pub const SINKS: Stages = Stages {
        sinks: true,
        ..Stages::NONE
    };
    pub const LAKE: Stages = Stages {
        lake: true,
        ..Stages::NONE
    };
}

/// A running set of stages. Dropping it shuts them down.
pub struct Running {
    pub edge_addr: Option<SocketAddr>,
    pub control_addr: Option<SocketAddr>,
    /// `/healthz`, `/readyz` and `/metrics` of the consumer stages (validate, lake).
    pub health_addr: Option<SocketAddr>,
    /// The query API of the identity stage and the engine (internal; control asks it).
    pub query_addr: Option<SocketAddr>,
    pub catalog: CatalogView,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Why the first stage or server that stopped on its own stopped.
    stopped: Stopped,
}

/// The reason the first stage (or server) of a process stopped with an error, kept for the
/// process's exit message: a supervisor restarting it sees why in its last line.
#[derive(Clone, Default)]
struct Stopped(Arc<std::sync::Mutex<Option<String>>>);

impl Stopped {
    fn record(&self, why: String) {
        let mut first = self.0.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(why);
    }

    fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Running {
    /// Runs a consumer stage until it ends; an error is logged and kept as the process's reason
    /// to stop (see [`Self::wait`]).
    fn spawn_stage<E: std::fmt::Display>(
        &mut self,
        what: &'static str,
        stage: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let stopped = self.stopped.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = stage.await {
                tracing::error!(error = %e, "{what} stopped");
                stopped.record(format!("the {what} stopped: {e}"));
            }
        }));
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }

    /// Resolves when any stage or server stops on its own (an error), with why.
    pub async fn wait(&mut self) -> String {
        if self.tasks.is_empty() {
            return futures::future::pending().await;
        }
        let (_, index, _) = futures::future::select_all(self.tasks.iter_mut()).await;
        self.tasks.remove(index);
        self.stopped
            .reason()
            .unwrap_or_else(|| "a stage stopped unexpectedly".to_string())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

pub async fn start(config: &CdpConfig, stages: Stages) -> Result<Running, StartError> {
    if config.kafka.bootstrap_servers.trim().is_empty() {
        return Err(StartError::NoBroker);
    }
    crate::exposure::check(config, stages)?;
    // Only the edge (verifying tokens) and control (signing them) use the token secret.
    if (stages.edge || stages.control) && config.auth.is_dev_secret() {
        tracing::warn!("auth.token_secret is the development default: set CDP_AUTH__TOKEN_SECRET in production");
    }
    let topics = &config.topics;
    let mut specs = vec![cdp_catalog::topic_spec(topics)];
    if stages.edge || stages.validate || stages.lake || stages.profile {
        specs.push(TopicSpec {
            name: topics.ingest_raw(),
            partitions: config.edge.raw_partitions,
            compacted: false,
        });
        for name in [topics.events_valid(), topics.events_error()] {
            specs.push(TopicSpec {
                name,
                partitions: config.validate.partitions,
                compacted: false,
            });
        }
    }
    if stages.profile || stages.engine || (stages.validate && config.validate.profile_intake) {
        // The engine reads profile.resolved; validate's profile intake writes profile.sequence.
        specs.extend(cdp_profile::run::topic_specs(topics, &config.profile));
    }
    if stages.engine || stages.sinks {
        // The sinks read segment.exports.
        specs.extend(cdp_engine::run::topic_specs(
            topics,
            config.profile.partitions,
            config.profile.identity_partitions,
        ));
    }
    if stages.control || stages.profile || stages.engine {
        // Control finds the instances that hold profiles and the identity graph there.
        specs.push(TopicSpec {
            name: topics.endpoints(),
            partitions: 1,
            compacted: true,
        });
    }
    if stages.sinks || stages.control {
        // Control's flow runs read sinks.status.
        specs.extend(cdp_sinks::flows::topic_specs(
            topics,
            config.profile.partitions,
        ));
    }
    ensure_topics(&config.kafka, &specs).await?;
    let catalog = CatalogView::start(&config.kafka, topics)?;
    catalog.caught_up(Duration::from_secs(30)).await?;
    let tokens = Tokens::new(&config.auth.token_secret);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut running = Running {
        edge_addr: None,
        control_addr: None,
        health_addr: None,
        query_addr: None,
        catalog: catalog.clone(),
        shutdown,
        tasks: Vec::new(),
        stopped: Stopped::default(),
    };

    if stages.control {
        if config.control.admin_token == cdp_control::settings::DEV_ADMIN_TOKEN {
            tracing::warn!("control.admin_token is the development default: set CDP_CONTROL__ADMIN_TOKEN in production");
        }
        if config.control.is_dev_secret_key() {
            tracing::warn!("control.secret_key is the public development key: destination credentials in the catalog are not protected; set CDP_CONTROL__SECRET_KEY (openssl rand -hex 32) in production");
        }
        let secrets = config.control.secret_key()?;
        let writer = CatalogWriter::new(&config.kafka, topics, catalog.clone())?;
        let segment_writer = writer.clone();
        let flow_writer = writer.clone();
        // Who calls control's APIs: the operator's admin token, or an org's key or token
        // within its org, sandboxes and roles.
        let auth = Authenticator::new(
            Arc::from(config.control.admin_token.as_str()),
            catalog.clone(),
            tokens.clone(),
        );
        let runs = cdp_control::flows::runs::FlowRuns::start(
            &config.kafka,
            topics,
            catalog.clone(),
            auth.clone(),
        )?;
        // Control's server also answers for the datasets' contents and batches.
        let lake_api =
            cdp_lake::LakeApi::start(&config.kafka, topics, &config.lake, catalog.clone()).await?;
        // …and for XDM schemas, datasets and the Confluent-compatible subjects (behind
        // credentials: the admin token, an org's API key or access token).
        let registry_auth =
            cdp_registry::confluent::RegistryAuth::new(auth.clone(), &topics.namespace);
        let registry = cdp_registry::RegistryState::start(
            &config.kafka,
            topics,
            catalog.clone(),
            writer.clone(),
        )
        .await?;
        let admin_token: Arc<str> = Arc::from(config.control.admin_token.as_str());
        // …and for profiles and identity graphs.
        let profiles =
            cdp_control::profiles::Lookups::start(&config.kafka, topics, admin_token.clone())
                .await?;
        let router = cdp_control::http::router(ControlState {
            view: catalog.clone(),
            writer,
            tokens: tokens.clone(),
            auth: auth.clone(),
            max_token_days: config.auth.max_token_days,
        })
        .merge(cdp_registry::confluent_router(
            &registry,
            registry_auth,
            cdp_registry::confluent::Limits {
                max_versions_per_subject: config.control.registry_max_versions_per_subject,
                max_subjects: config.control.registry_max_subjects,
            },
        ))
        .merge(cdp_control::profiles::router(
            profiles.clone(),
            catalog.clone(),
            auth.clone(),
        ))
        .merge(cdp_control::segments::router(
            cdp_control::segments::SegmentApi {
                view: catalog.clone(),
                writer: segment_writer,
                profiles: profiles.clone(),
                auth: auth.clone(),
            },
        ))
        .merge(cdp_control::flows::router(cdp_control::flows::FlowApi {
            view: catalog.clone(),
            writer: flow_writer,
            secrets,
            auth: auth.clone(),
        }))
        .merge(cdp_control::flows::runs::router(runs.clone()))
        .merge(cdp_ui::router(cdp_ui::UiState {
            catalog: catalog.clone(),
            lake: lake_api.clone(),
            profiles: profiles.clone(),
            runs,
            kafka: config.kafka.clone(),
            topics: topics.clone(),
            admin_token: admin_token.clone(),
            auth: auth.clone(),
            edge_url: config
                .control
                .public_edge_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.edge.listen)),
            sessions: cdp_ui::Sessions::default(),
        }))
        .merge(cdp_stage::health::metrics_router())
        .merge(cdp_lake::router(lake_api, auth.clone()))
        .merge(cdp_registry::xdm_router(registry, auth));
        let (addr, task) = serve(
            "control",
            &config.control.listen,
            router,
            shutdown_rx.clone(),
            running.stopped.clone(),
        )
        .await?;
        running.control_addr = Some(addr);
        running.tasks.push(task);
    }
    if stages.edge {
        let state = EdgeState::new(
            config.edge.clone(),
            &config.kafka,
            topics,
            catalog.clone(),
            tokens,
            &config.identity,
        )?;
        let router = cdp_edge::router(state);
        let (addr, task) = serve(
            "edge",
            &config.edge.listen,
            router,
            shutdown_rx.clone(),
            running.stopped.clone(),
        )
        .await?;
        running.edge_addr = Some(addr);
        running.tasks.push(task);
    }
    if stages.validate || stages.lake || stages.profile || stages.engine || stages.sinks {
        // One port for every consumer stage of the process (`cdp up` included).
        let (addr, task) = serve(
            "health",
            &config.health.listen,
            cdp_stage::health::router(),
            shutdown_rx.clone(),
            running.stopped.clone(),
        )
        .await?;
        running.health_addr = Some(addr);
        running.tasks.push(task);
    }
    if stages.validate {
        let (kafka, topics, settings, identity) = (
            config.kafka.clone(),
            config.topics.clone(),
            config.validate.clone(),
            config.identity.namespaces.clone(),
        );
        let intake = match settings.profile_intake {
            true => {
                let placement = cdp_profile::run::Placement::of(&config.kafka, &topics).await?;
                Some(Arc::new(cdp_profile::run::intake(
                    &config.profile,
                    &topics,
                    placement,
                )) as Arc<dyn cdp_validate::Follower>)
            }
            false => None,
        };
        let (view, stop) = (catalog.clone(), shutdown_rx.clone());
        running.spawn_stage("validate stage", async move {
            cdp_validate::stage::run(&kafka, &topics, &settings, &identity, view, intake, stop)
                .await
        });
    }
    if stages.lake {
        let (kafka, topics, mut settings) = (
            config.kafka.clone(),
            config.topics.clone(),
            config.lake.clone(),
        );
        // The registry's credential for reading Avro values: the stages' own.
        settings
            .registry_token
            .get_or_insert_with(|| config.control.admin_token.clone());
        let (view, stop) = (catalog.clone(), shutdown_rx.clone());
        running.spawn_stage("lake stage", async move {
            cdp_lake::run(&kafka, &topics, &settings, view, stop).await
        });
    }
    // The identity stage and the engine answer queries where their state lives.
    let (identity_reader, engine_reader) = (
        stages.profile.then(StateReader::new),
        stages.engine.then(StateReader::new),
    );
    if stages.profile || stages.engine {
        let addr = serve_queries(
            config,
            identity_reader.clone(),
            engine_reader.clone(),
            &shutdown_rx,
            &mut running,
        )
        .await?;
        running.query_addr = Some(addr);
    }
    if stages.profile {
        let (kafka, topics, mut settings) = (
            config.kafka.clone(),
            config.topics.clone(),
            config.profile.clone(),
        );
        // The backfill reads Avro values through the registry with the stages' credential.
        settings
            .registry_token
            .get_or_insert_with(|| config.control.admin_token.clone());
        let (view, stop) = (catalog.clone(), shutdown_rx.clone());
        running.spawn_stage("identity stage", async move {
            cdp_profile::run(&kafka, &topics, &settings, view, identity_reader, stop).await
        });
    }
    if stages.engine {
        let ignored = config.segment.ignored_keys();
        if !ignored.is_empty() {
            tracing::warn!(keys = ?ignored, "these settings of the former segment stage are ignored: segmentation runs in the profile engine, which takes its group, instance, batching and state from [profile]");
        }
        let settings = config.engine()?;
        let (kafka, topics) = (config.kafka.clone(), config.topics.clone());
        let (view, stop) = (catalog.clone(), shutdown_rx.clone());
        running.spawn_stage("profile engine", async move {
            cdp_engine::run(&kafka, &topics, &settings, view, engine_reader, stop).await
        });
    }
    if stages.sinks {
        // The key control sealed the connections' credentials with.
        let secrets = config.control.secret_key()?;
        let (kafka, topics, settings, partitions) = (
            config.kafka.clone(),
            config.topics.clone(),
            config.sinks.clone(),
            config.profile.partitions,
        );
        let (view, stop) = (catalog.clone(), shutdown_rx.clone());
        running.spawn_stage("sinks stage", async move {
            cdp_sinks::flows::run(&kafka, &topics, &settings, partitions, secrets, view, stop).await
        });
    }
    Ok(running)
}

/// Serves the query APIs of the identity stage and the engine on `profile.query_listen`, and
/// advertises on `<ns>.endpoints` which partitions each holds there.
async fn serve_queries(
    config: &CdpConfig,
    identity: Option<StateReader>,
    engine: Option<StateReader>,
    shutdown: &watch::Receiver<bool>,
    running: &mut Running,
) -> Result<SocketAddr, StartError> {
    let topics = &config.topics;
    let token: Arc<str> = Arc::from(config.control.admin_token.as_str());
    let engine_partitions = match &engine {
        Some(_) => partition_count(&config.kafka, &topics.profile_resolved()).await?,
        None => 0,
    };
    let identity_partitions = match &identity {
        Some(_) => partition_count(&config.kafka, &topics.profile_sequence()).await?,
        None => 0,
    };
    let mut router = Router::new();
    if let Some(reader) = &identity {
        router = router.merge(cdp_profile::identity::query::router(
            cdp_profile::identity::query::QueryState {
                reader: reader.clone(),
                partitions: identity_partitions,
            },
            token.clone(),
        ));
    }
    if let Some(reader) = &engine {
        router = router.merge(cdp_engine::query::router(
            cdp_engine::query::QueryState {
                reader: reader.clone(),
                partitions: engine_partitions,
            },
            token,
        ));
    }
    let (addr, task) = serve(
        "queries",
        &config.profile.query_listen,
        router,
        shutdown.clone(),
        running.stopped.clone(),
    )
    .await?;
    running.tasks.push(task);
    let url = match &config.profile.query_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None if addr.ip().is_unspecified() => {
            tracing::warn!(address = %addr, "profile.query_listen is a wildcard address and profile.query_url is not set: control may not reach this instance's queries");
            format!("http://{addr}")
        }
        None => format!("http://{addr}"),
    };
    let instance = cdp_stage::instance_id(config.profile.instance_id.as_deref())?;
    for (stage, reader, partition_count) in [
        ("identity", identity, identity_partitions),
        ("engine", engine, engine_partitions),
    ] {
        let Some(reader) = reader else {
            continue;
        };
        let me = Advertised {
            stage: stage.to_string(),
            instance: instance.clone(),
            url: url.clone(),
            partition_count,
        };
        let (kafka, topic, stop) = (config.kafka.clone(), topics.endpoints(), shutdown.clone());
        running.tasks.push(tokio::spawn(async move {
            advertise(&kafka, &topic, me, reader.watch(), stop).await;
        }));
    }
    Ok(addr)
}

async fn serve(
    stage: &'static str,
    addr: &str,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    stopped: Stopped,
) -> Result<(SocketAddr, JoinHandle<()>), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    tracing::info!(stage, address = %local, "listening");
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(stage, error = %e, "server stopped");
            stopped.record(format!("the {stage} server stopped: {e}"));
        }
    });
    Ok((local, task))
}
