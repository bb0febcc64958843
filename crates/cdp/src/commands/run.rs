//! `cdp edge`, `cdp control`, `cdp up`: start stages and serve until Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use cdp::Stages;

use super::load_config;

pub async fn stage(config: Option<PathBuf>, stages: Stages, demo: bool) -> anyhow::Result<()> {
    let config = load_config(config)?;
    let mut running = cdp::start(&config, stages).await.context("starting")?;
    tracing::info!(
        broker = %config.kafka.bootstrap_servers,
        namespace = %config.topics.namespace,
        edge = ?running.edge_addr,
        control = ?running.control_addr,
        health = ?running.health_addr,
        "ready"
    );
    if demo {
        if let (Some(edge), Some(control)) = (running.edge_addr, running.control_addr) {
            super::manage::demo(&config, edge, control).await?;
        }
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
        reason = running.wait() => anyhow::bail!("{reason}"),
    }
    running.shutdown().await;
    Ok(())
}
