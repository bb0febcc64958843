//! `cdp-bench …`: benchmarks against a real broker, each comparing the stage with a ceiling
//! measured in the same run (ratios survive a noisy shared machine; absolute numbers do not).
//! Its own binary, so the shipped `cdp` carries none of it; `make bench-<name>` runs
//! `cdp-bench <name>` (scripts/bench.sh starts the broker). The stages run in-process, started
//! by the same `cdp::start` as `cdp up`, with the same global allocator as `cdp`.

/// The allocator `cdp` ships with, so the stages measured here run as they do there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod copy_loop;
mod edge;
mod group;
mod hops;
mod identity;
mod latency;
mod pipeline;
mod procfs;
mod profile;
mod sinks;
mod validate;

use std::path::PathBuf;

use anyhow::Context as _;

use cdp_catalog::model::{CatalogRecord, PayloadType, Stream};
use cdp_catalog::{CatalogView, CatalogWriter, Dataset, ValueFormat, XdmSchema};
use cdp_contract::{KafkaSettings, Topics};
use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "cdp-bench",
    version,
    about = "Benchmarks of the pipeline's stages against a real broker",
    long_about = "Benchmarks of the pipeline's stages against a real broker \
(CDP_KAFKA__BOOTSTRAP_SERVERS), each compared with a ceiling measured in the same run. \
`make bench-<name>` starts a development broker and runs `cdp-bench <name>`; results go in \
docs/BENCHMARKS.md."
)]
struct Cli {
    /// Configuration file (TOML), as for `cdp`. Defaults to ./cdp.toml when it exists.
    #[arg(long, global = true, env = "CDP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: BenchCommand,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cdp_contract::telemetry::init();
    let cli = Cli::parse();
    let config = cli.config.clone().or_else(|| {
        let default = PathBuf::from("cdp.toml");
        default.exists().then_some(default)
    });
    match run(config, cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The pipeline's configuration, as `cdp` reads it.
fn load_config(path: Option<PathBuf>) -> anyhow::Result<cdp::CdpConfig> {
    cdp_contract::config::load(path.as_deref()).context("loading configuration")
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Edge batch ingestion vs a raw rdkafka producer into the same broker, in one run.
    Edge(edge::EdgeBenchArgs),
    /// The validate stage with one and two instances vs a plain validation loop, in one run.
    Validate(validate::ValidateBenchArgs),
    /// The profile stages (identity → engine, with streaming definitions) vs the
    /// validate stage on the same events, in one run; latency, restore, memory and disk per
    /// profile, control's memory while it answers lookups.
    Profile(profile::ProfileBenchArgs),
    /// The identity owners alone, with one and with two instances alternated, over sandboxes
    /// spread over profile.sequence's partitions: events/s and the two-owner ratio.
    Identity(identity::IdentityBenchArgs),
    /// The whole pipeline (edge → validate and profile intake → identity → engine) with streaming segments of the
    /// five types: sustained events/s, edge-ack → membership latency, exit-timer lateness.
    Pipeline(pipeline::PipelineBenchArgs),
    /// The sinks stage delivering destination-flow exports to Kinesis (kinesalite) and a Kafka
    /// topic vs a raw PutRecords / produce loop in the same run; export → destination latency.
    Sinks(sinks::SinksBenchArgs),
}

async fn run(config: Option<PathBuf>, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Edge(args) => edge::run(config, args).await,
        BenchCommand::Validate(args) => validate::run(config, args).await,
        BenchCommand::Profile(args) => profile::run(config, args).await,
        BenchCommand::Identity(args) => identity::run(config, args).await,
        BenchCommand::Pipeline(args) => pipeline::run(config, args).await,
        BenchCommand::Sinks(args) => sinks::run(config, args).await,
    }
}

/// The catalog every benchmark uses: version one of schema
/// `https://ns.adobe.com/bench/schemas/web` with `definition`, dataset `bench-dataset` of org
/// `BENCH@AdobeOrg`, and stream `bench` into it. Written straight to the catalog topic, as
/// control would.
pub async fn seed_catalog(
    kafka: &KafkaSettings,
    topics: &Topics,
    view: &CatalogView,
    definition: Value,
) -> anyhow::Result<()> {
    let schema_id = "https://ns.adobe.com/bench/schemas/web";
    let writer = CatalogWriter::new(kafka, topics, view.clone())?;
    let records = [
        CatalogRecord::Schema(XdmSchema {
            org_id: None,
            id: schema_id.into(),
            version: 1,
            title: "bench".into(),
            tenant: "bench".into(),
            class: "_xdm.context.experienceevent".into(),
            field_groups: vec![],
            profile_enabled: true,
            definition,
            created_at: 0,
        }),
        CatalogRecord::Dataset(Dataset {
            id: "bench-dataset".into(),
            name: "bench".into(),
            org_id: ORG.into(),
            schema_id: schema_id.into(),
            schema_version: 1,
            profile_enabled: true,
            profile_event_ttl_days: None,
            format: ValueFormat::Json,
            created_at: 0,
        }),
        CatalogRecord::Stream(Stream {
            id: "bench".into(),
            name: "bench".into(),
            description: None,
            org_id: ORG.into(),
            sandbox: "prod".into(),
            payload_type: PayloadType::Json,
            authentication_required: false,
            rate_limit: None,
            dataset_id: Some("bench-dataset".into()),
            schema_ref: None,
            allowed_origins: Vec::new(),
            created_at: 0,
        }),
    ];
    for r in &records {
        writer.put(r).await?;
    }
    Ok(())
}

pub const ORG: &str = "BENCH@AdobeOrg";
