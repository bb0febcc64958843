//! `cdp`: run the pipeline's stages, manage streams, API keys, tokens and sealed credentials,
//! and send synthetic traffic. The benchmarks are a binary of their own (`cdp-bench`).

mod commands;

/// mimalloc rather than glibc's malloc: allocation was a third of the profile path's CPU
/// (docs/BENCHMARKS.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cdp",
    version,
    about = "Kafka-native streaming customer-data pipeline",
    long_about = "Kafka-native streaming customer-data pipeline.\n\n\
Stages run as their own processes (`cdp edge`, `cdp control`, `cdp validate`, `cdp lake`,\n\
`cdp profile`, `cdp engine`, `cdp sinks`) or all together (`cdp up`).\n\
Configuration comes from a TOML file (--config, default ./cdp.toml when present) and\n\
CDP_SECTION__KEY environment variables, e.g. CDP_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092."
)]
struct Cli {
    /// Configuration file (TOML). Defaults to ./cdp.toml when it exists.
    #[arg(long, global = true, env = "CDP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge: HTTP ingestion (/collection, /collection/batch, /stream/v0/data) into Kafka.
    Edge,
    /// Run control: the management API (streams, API keys, tokens) over the catalog topic.
    Control,
    /// Run validate: a consumer group on the raw topic writing events.valid / events.error, and
    /// (unless validate.profile_intake is false) the profile intake's items to profile.sequence
    /// in the same transaction.
    Validate,
    /// Run the lake: events.valid / events.error to Parquet datasets, with batch metadata.
    Lake,
    /// Run the profile stages: identity (the identity graph, from profile.sequence, which
    /// validate's profile intake writes) and the profile engine, two consumer groups.
    Profile,
    /// Run the profile engine alone: each profile's state and its streaming segments
    /// (profile.resolved → profile.updates, segment.membership(.json), segment.exports), exits
    /// by timer. Scale it by the partitions of profile.resolved.
    Engine,
    /// The profile engine (segmentation is part of it now); kept for scripts that run
    /// `cdp segment`, and logs that it is `cdp engine`.
    #[command(hide = true)]
    Segment,
    /// Run the sinks: deliver what the destination flows export (segment.exports) to Amazon
    /// Kinesis, Azure Event Hubs or Kafka, one consumer group per flow target, at least once.
    Sinks,
    /// Run every stage built so far in one process (development).
    Up {
        /// Create a demo stream and print curl lines to try.
        #[arg(long)]
        demo: bool,
    },
    /// Manage streaming connections (talks to the control API).
    #[command(subcommand)]
    Streams(commands::manage::StreamsCommand),
    /// Manage API keys (talks to the control API).
    #[command(subcommand)]
    Keys(commands::manage::KeysCommand),
    /// Exchange an API key for an access token.
    Token(commands::manage::TokenArgs),
    /// Destination credentials sealed in the catalog (rotation of control.secret_key).
    #[command(subcommand)]
    Secrets(commands::secrets::SecretsCommand),
    /// Send synthetic web and commerce events (page views, product views, add-to-cart,
    /// purchases over N people) to a running stack through the Rust SDK, with progress.
    Send(commands::send::SendArgs),
}

/// How long the process waits at exit for blocking calls still running. A librdkafka call can
/// wait forever for a broker that went away while it ran (a transaction commit in flight, say);
/// the broker aborts or fences what such a call left open.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

async fn run() -> std::process::ExitCode {
    cdp_contract::telemetry::init();
    let cli = Cli::parse();
    let config_path = cli.config.clone().or_else(|| {
        let default = PathBuf::from("cdp.toml");
        default.exists().then_some(default)
    });
    let result = match cli.command {
        Command::Edge => commands::run::stage(config_path, cdp::Stages::EDGE, false).await,
        Command::Control => commands::run::stage(config_path, cdp::Stages::CONTROL, false).await,
        Command::Validate => commands::run::stage(config_path, cdp::Stages::VALIDATE, false).await,
        Command::Lake => commands::run::stage(config_path, cdp::Stages::LAKE, false).await,
        Command::Profile => commands::run::stage(config_path, cdp::Stages::PROFILE, false).await,
        Command::Engine => commands::run::stage(config_path, cdp::Stages::ENGINE, false).await,
        Command::Segment => {
            tracing::warn!("`cdp segment` runs the profile engine, which evaluates segments where profiles live; run `cdp engine` (or `cdp profile`, which includes it)");
            commands::run::stage(config_path, cdp::Stages::ENGINE, false).await
        }
        Command::Sinks => commands::run::stage(config_path, cdp::Stages::SINKS, false).await,
        Command::Up { demo } => commands::run::stage(config_path, cdp::Stages::ALL, demo).await,
        Command::Streams(c) => commands::manage::streams(config_path, c).await,
        Command::Keys(c) => commands::manage::keys(config_path, c).await,
        Command::Token(a) => commands::manage::token(config_path, a).await,
        Command::Secrets(c) => commands::secrets::run(config_path, c).await,
        Command::Send(a) => commands::send::run(config_path, a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
