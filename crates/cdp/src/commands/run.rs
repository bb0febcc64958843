//! `cdp edge`, `cdp control`, `cdp up`: start stages and serve until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

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
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted (SIGINT): shutting down"),
        _ = terminated() => tracing::info!("asked to stop (SIGTERM): shutting down"),
        reason = running.wait() => anyhow::bail!("{reason}"),
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, running.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "stages still stopping after the grace period; exiting without them (their open transactions are aborted by the broker)"
        );
    }
    Ok(())
}

/// How long a stop waits for the stages to commit what they hold and leave their groups: within
/// the 30 s an orchestrator gives by default before it kills.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Resolves on SIGTERM, what docker and Kubernetes send to stop a container. Without it the
/// process died at once: no last commit, no leaving the group, so partitions moved only after the
/// session timeout.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C"),
        }
    }
    std::future::pending::<()>().await
}
