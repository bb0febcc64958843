//! Benchmarks (filled in below).
use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Edge batch ingestion vs a raw rdkafka producer into the same broker, in one run.
    Edge(super::bench_edge::EdgeBenchArgs),
}

pub async fn run(config: Option<PathBuf>, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Edge(args) => super::bench_edge::run(config, args).await,
    }
}
