//! `cdp secrets`: what an operator does with the credentials sealed in the catalog.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::load_config;

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Seal every destination connection's credentials again with control.secret_key.
    ///
    /// Rotating the key: set the new key as control.secret_key and move the old one to
    /// control.previous_secret_keys on control and the sinks (both keep working: the old key
    /// still opens what it sealed, new connections use the new one); run this; then remove the
    /// old key from control.previous_secret_keys. Safe to run again: connections already sealed
    /// with the current key are left alone. Exits non-zero if a connection could not be opened
    /// with any configured key (it is left as it is, and named).
    Reseal,
}

pub async fn run(config: Option<PathBuf>, cmd: SecretsCommand) -> anyhow::Result<()> {
    let config = load_config(config)?;
    match cmd {
        SecretsCommand::Reseal => {
            let key = config
                .control
                .secret_key()
                .context("control.secret_key / control.previous_secret_keys")?;
            let done = cdp::secrets::reseal(&config.kafka, &config.topics, &key).await?;
            println!(
                "key {}: {} connection(s) sealed again, {} already sealed with it or without credentials",
                done.key_id,
                done.resealed.len(),
                done.unchanged
            );
            for id in &done.resealed {
                println!("  resealed {id}");
            }
            if !done.failed.is_empty() {
                for (id, e) in &done.failed {
                    eprintln!("  cannot open {id}: {e}");
                }
                anyhow::bail!(
                    "{} connection(s) could not be opened with control.secret_key or control.previous_secret_keys",
                    done.failed.len()
                );
            }
            Ok(())
        }
    }
}
