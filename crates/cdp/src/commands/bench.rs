//! `cdp bench …`: benchmarks against a real broker, each comparing the stage with a ceiling
//! measured in the same run (ratios survive a noisy shared machine; absolute numbers do not).
use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Edge batch ingestion vs a raw rdkafka producer into the same broker, in one run.
    Edge(super::bench_edge::EdgeBenchArgs),
    /// The validate stage with one and two instances vs a plain validation loop, in one run.
    Validate(super::bench_validate::ValidateBenchArgs),
}

pub async fn run(config: Option<PathBuf>, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Edge(args) => super::bench_edge::run(config, args).await,
        BenchCommand::Validate(args) => super::bench_validate::run(config, args).await,
    }
}
