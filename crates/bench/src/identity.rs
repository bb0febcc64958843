//! `cdp-bench identity`: the identity owners alone, with one and with two instances, alternated
//! in one run on one broker. Each round gets a fresh namespace: the bench's people (as
//! `cdp-bench profile` makes them) spread over `--sandboxes` sandboxes, their events written to
//! profile.sequence as validate's profile intake writes them (each on its sandbox's
//! partition), then `--owners` in-process identity stages (`cdp profile`'s identity stage, no
//! engine) started together, timed until their group has committed the end of
//! profile.sequence. Events/s from the first commit to the last (steady) and from start (group
//! join and restore included), and the two-owner rounds' ratio to the one-owner rounds'.
//!
//! Sandboxes are named so that they spread evenly over the partitions: graphs are sharded by
//! sandbox, so two owners can only share the work of at least two sandboxes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cdp_contract::admin::ensure_topics;
use cdp_contract::partition::for_sandbox;
use cdp_contract::KafkaSettings;
use cdp_profile::ProfileSettings;
use clap::Args;
use rdkafka::consumer::BaseConsumer;

use super::group::{committed, end_offsets};
use super::procfs::{broker_pid, cpu_seconds};
use super::profile::{config_of, namespace, produce_all, Items, Shape};
use crate::load_config;

#[derive(Args, Debug, Clone)]
pub struct IdentityBenchArgs {
    /// People, so profiles.
    #[arg(long, default_value_t = 200_000)]
    profiles: u64,
    /// Events per person.
    #[arg(long, default_value_t = 2)]
    events_per_profile: u64,
    /// Share of people stitched from an ECID part and a CRMID part by a login event, percent.
    #[arg(long, default_value_t = 20)]
    stitched_pct: u64,
    /// Sandboxes the people are spread over (person `n` in sandbox `n mod sandboxes`).
    #[arg(long, default_value_t = 2)]
    sandboxes: u64,
    /// Partitions of profile.sequence (profile.identity_partitions).
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// Rounds of each owner count, alternated (1, 2, 1, 2, …).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
}

/// One round's outcome.
struct Round {
    owners: u32,
    steady: f64,
    overall: f64,
    first_commit: Duration,
    /// CPU seconds of this process and the broker during the round.
    cpu: (f64, f64),
}

pub async fn run(config: Option<PathBuf>, args: IdentityBenchArgs) -> anyhow::Result<()> {
    let config = load_config(config)?;
    if config.kafka.bootstrap_servers.is_empty() {
        bail!("no broker configured (CDP_KAFKA__BOOTSTRAP_SERVERS); `make bench` starts one");
    }
    if args.profiles == 0 || args.events_per_profile == 0 || args.sandboxes == 0 {
        bail!("--profiles, --events-per-profile and --sandboxes must be at least 1");
    }
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let kafka = config.kafka.clone();
    let shape = Shape {
        profiles: args.profiles,
        per: args.events_per_profile,
        stitched_pct: args.stitched_pct.min(100),
    };
    let sandboxes = spread_sandboxes(args.sandboxes, args.partitions);
    println!(
        "cdp-bench identity: {} profiles × {} events = {} events, {} stitched, over sandboxes {:?} on {} partitions of profile.sequence, broker {}",
        args.profiles,
        args.events_per_profile,
        shape.total(),
        shape.stitched_count(),
        sandboxes
            .iter()
            .map(|s| format!("{s} (partition {})", for_sandbox(super::ORG, s, args.partitions)))
            .collect::<Vec<_>>(),
        args.partitions,
        kafka.bootstrap_servers,
    );
    let broker = broker_pid(&kafka.bootstrap_servers);
    let mut rounds = Vec::new();
    for _ in 0..args.rounds {
        for owners in [1, 2] {
            let r = round(&kafka, &args, shape, &sandboxes, owners, broker.as_deref()).await?;
            println!(
                "  {} owner{}: {:>8.0} events/s steady, {:>8.0} events/s from start (first commit after {:.1} s); CPU {:.1} s process + {:.1} s broker",
                r.owners,
                if r.owners == 1 { " " } else { "s" },
                r.steady,
                r.overall,
                r.first_commit.as_secs_f64(),
                r.cpu.0,
                r.cpu.1,
            );
            rounds.push(r);
        }
    }
    let mean = |owners: u32, f: fn(&Round) -> f64| {
        let of: Vec<f64> = rounds
            .iter()
            .filter(|r| r.owners == owners)
            .map(f)
            .collect();
        of.iter().sum::<f64>() / of.len().max(1) as f64
    };
    println!(
        "two owners / one owner: {:.2}× steady, {:.2}× from start",
        mean(2, |r| r.steady) / mean(1, |r| r.steady).max(1.0),
        mean(2, |r| r.overall) / mean(1, |r| r.overall).max(1.0),
    );
    Ok(())
}

/// `count` sandbox names, the `k`-th placed on partition `k mod partitions`.
fn spread_sandboxes(count: u64, partitions: i32) -> Vec<String> {
    let mut names = Vec::new();
    let mut n = 0u64;
    for k in 0..count {
        let want = (k % partitions as u64) as i32;
        loop {
            let name = format!("sb{n}");
            n += 1;
            if for_sandbox(super::ORG, &name, partitions) == want {
                names.push(name);
                break;
            }
        }
    }
    names
}

async fn round(
    kafka: &KafkaSettings,
    args: &IdentityBenchArgs,
    shape: Shape,
    sandboxes: &[String],
    owners: u32,
    broker: Option<&str>,
) -> anyhow::Result<Round> {
    let (topics, view) = namespace(kafka, 1, |_| Vec::new()).await?;
    let state = std::env::temp_dir().join(format!("cdp-bench-identity-{}", topics.namespace));
    let settings = ProfileSettings {
        group_prefix: format!("{}-profile", topics.namespace),
        identity_partitions: args.partitions,
        // The owners are measured: every item goes through them.
        identity_fast_path: false,
        state_dir: Some(state.display().to_string()),
        ..ProfileSettings::default()
    };
    ensure_topics(kafka, &cdp_profile::run::topic_specs(&topics, &settings)).await?;
    let placement = cdp_profile::run::Placement::of(kafka, &topics).await?;
    let partitions = placement.sequence;
    let items = Items::new(&topics, &settings, placement, &view);
    let total = shape.total();
    produce_all(kafka, &topics.profile_sequence(), total, |i| {
        let (key, value) = shape.event(i);
        let person = i % shape.profiles;
        let sandbox = &sandboxes[(person % sandboxes.len() as u64) as usize];
        items.of_in(i, sandbox, &key, &value)
    })
    .await?;

    let probe: BaseConsumer = kafka
        .consumer("bench-identity-probe", &settings.group("identity"))
        .create()?;
    let (ends, end) = end_offsets(&probe, &topics.profile_sequence(), partitions)?;
    let cpu_before = (cpu_seconds("self"), broker.and_then(cpu_seconds));
    let started = Instant::now();
    let mut running = Vec::new();
    for k in 0..owners {
        let instance = ProfileSettings {
            instance_id: Some(format!("owner-{k}")),
            ..settings.clone()
        };
        running.push(
            cdp::start(&config_of(kafka, &topics, &instance), cdp::Stages::IDENTITY)
                .await
                .context("starting an identity stage")?,
        );
    }
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let done = committed(&probe, &ends)?;
        if done > 0 && first.is_none() {
            first = Some((Instant::now(), done));
        }
        if done >= end {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the identity stage did not finish within 30 minutes ({done} of {end})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let finished = Instant::now();
    let cpu = (
        cpu_seconds("self").unwrap_or(0.0) - cpu_before.0.unwrap_or(0.0),
        broker.and_then(cpu_seconds).unwrap_or(0.0) - cpu_before.1.unwrap_or(0.0),
    );
    for r in running {
        tokio::time::timeout(Duration::from_secs(120), r.shutdown())
            .await
            .context("the identity stages did not stop within 2 minutes")?;
    }
    let _ = std::fs::remove_dir_all(&state);
    let (first_at, first_done) = first.unwrap_or((started, 0));
    let steady_secs = (finished - first_at).as_secs_f64();
    Ok(Round {
        owners,
        steady: if steady_secs > 0.0 {
            (end - first_done) as f64 / steady_secs
        } else {
            0.0
        },
        overall: end as f64 / (finished - started).as_secs_f64(),
        first_commit: first_at - started,
        cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandboxes_are_spread_evenly_over_the_partitions() {
        let names = spread_sandboxes(6, 3);
        let placed: Vec<i32> = names
            .iter()
            .map(|s| for_sandbox(super::super::ORG, s, 3))
            .collect();
        assert_eq!(placed, [0, 1, 2, 0, 1, 2]);
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 6);
    }
}
