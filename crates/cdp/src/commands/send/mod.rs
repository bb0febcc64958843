//! `cdp send`: synthetic web and commerce events (page views, product views, add-to-cart,
//! purchases) spread over a number of people, sent to a running stack through the Rust SDK
//! (`cdp-client`) with a progress bar — a way to see the pipeline move, and the SDK's own
//! smoke test.
//!
//! The people and their events are deterministic for a `--seed` (picks by the benchmarks'
//! splitmix, [`super::bench::mix`]); `_id` and `timestamp` are left to the client to fill in.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cdp::CdpConfig;
use cdp_client::{Auth, Client, Outcome};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::load_config;

mod journeys;
use journeys::Journeys;

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:
  # the stream's org, dataset and schema are looked up at control (admin token from the configuration)
  cdp send --stream 59e43b… --events 5000 --profiles 200

  # an authenticated stream, 200 events per second, without asking control about the stream
  CDP_API_KEY=cdpk.… cdp send --stream 59e43b… --rate 200/s \\
      --org ACME@AdobeOrg --dataset 8662cdf1… --schema https://ns.adobe.com/acme/schemas/aab593…

Exits non-zero when no event was accepted.")]
pub struct SendArgs {
    /// The stream (connection id) to send to.
    #[arg(long)]
    stream: String,
    /// How many events to send.
    #[arg(long, default_value_t = 1000)]
    events: u64,
    /// People the events are spread over: each has an ECID; about half of them log in and
    /// carry an Email as well on their cart and purchase events.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    profiles: u64,
    /// Offered load, events per second ("500" or "500/s"); as fast as the edge takes them when
    /// omitted.
    #[arg(long, value_parser = parse_rate, value_name = "N/s")]
    rate: Option<f64>,
    /// Edge base URL [default: http://<edge.listen> from the configuration, so
    /// http://127.0.0.1:8080]
    #[arg(long, env = "CDP_EDGE_URL")]
    edge: Option<String>,
    /// Control API base URL, for access tokens and the stream lookup [default:
    /// http://<control.listen> from the configuration, so http://127.0.0.1:8081]
    #[arg(long, env = "CDP_CONTROL_URL")]
    control: Option<String>,
    /// API key (cdpk.<id>.<secret>) for a stream that requires authentication; the client
    /// exchanges it at control for access tokens and renews them.
    #[arg(long, env = "CDP_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Admin token for looking the stream up at control (GET /streams/{id}) [default:
    /// control.admin_token from the configuration]. Not needed with --schema.
    #[arg(long, env = "CDP_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Org of the events (header.imsOrgId) [default: the stream's]
    #[arg(long)]
    org: Option<String>,
    /// Dataset of the events (header.datasetId) [default: the stream's]
    #[arg(long)]
    dataset: Option<String>,
    /// XDM schema id of the events (schemaRef.id) [default: the stream's]. When given, control
    /// is not asked about the stream: without --org and --dataset the edge uses the stream's.
    #[arg(long)]
    schema: Option<String>,
    /// Schema version [default: the stream's, else the latest]
    #[arg(long)]
    schema_version: Option<u32>,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Have the edge check each event against the schema now (?syncValidation=true): schema
    /// violations come back as refusals instead of being quarantined later.
    #[arg(long)]
    sync_validation: bool,
    /// Seed of the synthetic people and journeys (same seed, same events).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `500`, `500/s`, `2.5/s`.
fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s").trim();
    match n.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate: give events per second, e.g. 500 or 500/s"
        )),
    }
}

pub async fn run(config: Option<PathBuf>, args: SendArgs) -> anyhow::Result<()> {
    run_with(&load_config(config)?, args).await
}

/// Sends, prints the summary, and fails when nothing was accepted.
async fn run_with(config: &CdpConfig, args: SendArgs) -> anyhow::Result<()> {
    let summary = send(config, args).await?;
    println!("{}", summary.line());
    if let Some(m) = &summary.first_refusal {
        println!("first refusal: {m}");
    }
    if let Some(m) = &summary.first_failure {
        println!("first failure: {m}");
    }
    if summary.accepted == 0 {
        let why = summary
            .first_refusal
            .as_deref()
            .or(summary.first_failure.as_deref())
            .unwrap_or("no event was sent");
        bail!("nothing was accepted by the edge: {why}");
    }
    Ok(())
}

/// What a run came to.
#[derive(Debug)]
pub struct Summary {
    stream: String,
    events: u64,
    accepted: u64,
    refused: u64,
    failed: u64,
    retries: u64,
    elapsed: Duration,
    first_refusal: Option<String>,
    first_failure: Option<String>,
}

impl Summary {
    fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        format!(
            "sent {} events to stream {} in {secs:.1} s ({:.0} events/s): {} accepted, {} refused, {} failed, {} retries",
            self.events,
            self.stream,
            self.events as f64 / secs.max(1e-3),
            self.accepted,
            self.refused,
            self.failed,
            self.retries
        )
    }
}

/// Where the events go: from the flags, else from control's record of the stream.
#[derive(Debug, PartialEq)]
struct Target {
    org: Option<String>,
    dataset: Option<String>,
    schema: String,
    schema_version: Option<u32>,
}

/// `http://<listen>`, with an any-address listen (0.0.0.0, [::]) turned into loopback.
fn local_url(listen: &str) -> String {
    let listen = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "127.0.0.1:");
    format!("http://{listen}")
}

async fn target(config: &CdpConfig, args: &SendArgs, control: &str) -> anyhow::Result<Target> {
    if let Some(schema) = &args.schema {
        return Ok(Target {
            org: args.org.clone(),
            dataset: args.dataset.clone(),
            schema: schema.clone(),
            schema_version: args.schema_version,
        });
    }
    let token = args
        .admin_token
        .clone()
        .unwrap_or_else(|| config.control.admin_token.clone());
    let path = format!("/streams/{}", args.stream);
    let stream = super::manage::Client::at(control, token)
        .call(reqwest::Method::GET, &path, None)
        .await
        .with_context(|| {
            format!("GET {control}{path} (give --schema, --org and --dataset to skip the lookup)")
        })?;
    let schema = stream["schemaRef"]["id"]
        .as_str()
        .context("the stream has no schemaRef.id; give --schema")?
        .to_string();
    // "application/vnd.adobe.xed-full+json;version=3" → 3
    let version = stream["schemaRef"]["contentType"]
        .as_str()
        .and_then(|c| c.split(';').find_map(|p| p.trim().strip_prefix("version=")))
        .and_then(|v| v.trim().parse().ok());
    Ok(Target {
        org: args
            .org
            .clone()
            .or_else(|| stream["orgId"].as_str().map(str::to_string)),
        dataset: args
            .dataset
            .clone()
            .or_else(|| stream["datasetId"].as_str().map(str::to_string)),
        schema,
        schema_version: args.schema_version.or(version),
    })
}

pub async fn send(config: &CdpConfig, args: SendArgs) -> anyhow::Result<Summary> {
    let edge = args
        .edge
        .clone()
        .unwrap_or_else(|| local_url(&config.edge.listen));
    let control = args
        .control
        .clone()
        .unwrap_or_else(|| local_url(&config.control.listen))
        .trim_end_matches('/')
        .to_string();
    let target = target(config, &args, &control).await?;
    let mut builder = Client::builder(&edge, &args.stream)
        .schema_id(&target.schema)
        .batch_size(args.batch_size)
        .sync_validation(args.sync_validation);
    if let Some(v) = target.schema_version {
        builder = builder.schema_version(v);
    }
    if let Some(o) = &target.org {
        builder = builder.org_id(o);
    }
    if let Some(d) = &target.dataset {
        builder = builder.dataset_id(d);
    }
    if let Some(key) = &args.api_key {
        builder = builder.auth(Auth::ApiKey {
            control_url: control.clone(),
            api_key: key.clone(),
        });
    }
    let client = builder.build().context("configuring the client")?;

    // Hidden by indicatif when stderr is not a terminal; the summary line is printed anyway.
    let bar = ProgressBar::new(args.events);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:24}] {msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    let started = Instant::now();
    // Aborted when dropped, also on an early return: it holds a client handle.
    let ticker = AbortOnDrop({
        let (client, bar) = (client.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                show(&bar, &client, started);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    // Outcomes are awaited apart from sending, to keep the first refusal and failure to show.
    let (receipts, mut pending) = tokio::sync::mpsc::channel::<cdp_client::Receipt>(10_000);
    let collector = tokio::spawn(async move {
        let (mut refusal, mut failure) = (None, None);
        while let Some(r) = pending.recv().await {
            match r.await {
                Outcome::Accepted { .. } => {}
                Outcome::Refused { message, .. } => {
                    refusal.get_or_insert(message);
                }
                Outcome::Failed(e) => {
                    failure.get_or_insert(e.to_string());
                }
            }
        }
        (refusal, failure)
    });

    let journeys = Journeys {
        seed: args.seed,
        profiles: args.profiles,
    };
    for i in 0..args.events {
        if let Some(rate) = args.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let receipt = client
            .send(journeys.event(i))
            .await
            .context("handing an event to the client")?;
        if receipts.send(receipt).await.is_err() {
            bail!("the outcome collector stopped");
        }
    }
    drop(receipts);
    client.close().await.context("closing the client")?;
    let elapsed = started.elapsed();
    let (first_refusal, first_failure) = collector.await.context("the outcome collector")?;
    drop(ticker);
    // The summary line that `run` prints takes the bar's place.
    bar.finish_and_clear();
    let stats = client.stats();
    Ok(Summary {
        stream: args.stream,
        events: stats.sent,
        accepted: stats.accepted,
        refused: stats.refused,
        failed: stats.failed,
        retries: stats.retries,
        elapsed,
        first_refusal,
        first_failure,
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn show(bar: &ProgressBar, client: &Client, started: Instant) {
    let s = client.stats();
    let settled = s.accepted + s.refused + s.failed;
    let rate = settled as f64 / started.elapsed().as_secs_f64().max(1e-3);
    // The numbers are all in the message, set first: the redraw that setting the position
    // triggers shows them together (indicatif draws at most 20 times a second, so the second
    // of two updates in a row may not be drawn).
    bar.set_message(format!(
        "{settled}/{} · {rate:.0} events/s · accepted {} · refused {} · failed {} · retries {}",
        bar.length().unwrap_or_default(),
        s.accepted,
        s.refused,
        s.failed,
        s.retries
    ));
    bar.set_position(settled);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::HashSet;

    use cdp_test_support::{free_port, unique_name, Broker};

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("500").unwrap(), 500.0);
        assert_eq!(parse_rate("2.5/s").unwrap(), 2.5);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(local_url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(local_url("127.0.0.1:8081"), "http://127.0.0.1:8081");
    }

    fn args(stream: &str) -> SendArgs {
        SendArgs {
            stream: stream.into(),
            events: 0,
            profiles: 20,
            rate: None,
            edge: None,
            control: None,
            api_key: None,
            admin_token: None,
            org: None,
            dataset: None,
            schema: None,
            schema_version: None,
            batch_size: 50,
            sync_validation: false,
            seed: 1,
        }
    }

    /// The real edge and control on a real broker: the events are valid for the demo's schema
    /// (the edge validates them), authenticated by an API key, and all on the raw topic; a
    /// run that gets nothing accepted is an error.
    #[tokio::test]
    async fn sends_valid_events_to_a_real_stack() {
        cdp_contract::telemetry::init_for_tests();
        let broker = Broker::start();
        let namespace = unique_name("send");
        let mut config = CdpConfig {
            kafka: broker.kafka(),
            topics: cdp_contract::Topics::new(namespace.clone()),
            ..CdpConfig::default()
        };
        config.edge.listen = "127.0.0.1:0".into();
        config.control.listen = format!("127.0.0.1:{}", free_port());
        config.control.admin_token = "send-test-admin".into();
        config.auth.token_secret = "send-test-secret".into();
        config.edge.raw_partitions = 2;
        let control_running = cdp::start(&config, cdp::Stages::CONTROL)
            .await
            .expect("start control");
        let edge_running = cdp::start(&config, cdp::Stages::EDGE)
            .await
            .expect("start edge");
        let control = format!("http://{}", config.control.listen);
        let edge = format!("http://{}", edge_running.edge_addr.expect("edge address"));
        let http = reqwest::Client::new();
        let call = |path: &str, body: Value| {
            http.post(format!("{control}{path}"))
                .bearer_auth("send-test-admin")
                .json(&body)
                .send()
        };
        let org = "SEND@AdobeOrg";
        let schema: Value = call(
            "/xdm/schemas",
            json!({"title": "Send test", "tenant": "send", "class": "_xdm.context.experienceevent",
                   "fieldGroups": ["environment-details", "web-details", "commerce-details"]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let schema_id = schema["id"].as_str().expect("schema id").to_string();
        let dataset: Value = call(
            "/datasets",
            json!({"name": "send", "orgId": org, "schemaRef": {"id": schema_id}}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let stream: Value = call(
            "/streams",
            json!({"name": "send", "orgId": org, "datasetId": dataset["id"],
                   "authenticationRequired": true, "rateLimit": 20}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let stream_id = stream["id"].as_str().expect("stream id").to_string();
        let key: Value = call("/api-keys", json!({"name": "send", "orgId": org}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let api_key = key["apiKey"].as_str().expect("apiKey").to_string();
        let key_id = key["id"].as_str().unwrap().to_string();
        cdp_test_support::eventually(
            Duration::from_secs(5),
            "the edge to know the stream and the key",
            async || {
                let c = edge_running.catalog.read();
                c.streams.contains_key(&stream_id) && c.api_keys.contains_key(&key_id)
            },
        )
        .await;

        // The stream's org, dataset and schema come from control; the edge validates each
        // event against the schema.
        let summary = send(
            &config,
            SendArgs {
                events: 400,
                edge: Some(edge.clone()),
                control: Some(control.clone()),
                api_key: Some(api_key.clone()),
                admin_token: Some("send-test-admin".into()),
                sync_validation: true,
                ..args(&stream_id)
            },
        )
        .await
        .unwrap();
        assert_eq!(
            (
                summary.events,
                summary.accepted,
                summary.refused,
                summary.failed
            ),
            (400, 400, 0, 0),
            "{summary:?}"
        );
        assert!(
            summary.line().contains("400 accepted"),
            "{}",
            summary.line()
        );
        let records = broker
            .read_committed(&config.topics.ingest_raw(), 400, Duration::from_secs(20))
            .await;
        let ids: HashSet<String> = records
            .iter()
            .map(|r| {
                r.json()["body"]["xdmEntity"]["_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!((records.len(), ids.len()), (400, 400));
        let first = records[0].json();
        assert_eq!(first["header"]["imsOrgId"], org);
        assert_eq!(first["header"]["datasetId"], dataset["id"]);
        assert_eq!(first["header"]["schemaRef"]["id"], schema_id.as_str());

        // The wrong schema: every event refused, and the run is an error that says why.
        let err = run_with(
            &config,
            SendArgs {
                events: 5,
                edge: Some(edge.clone()),
                control: Some(control.clone()),
                api_key: Some(api_key),
                schema: Some("https://ns.adobe.com/send/schemas/unknown".into()),
                ..args(&stream_id)
            },
        )
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("nothing was accepted by the edge")
                && format!("{err:#}").contains("Message has unknown xdm format"),
            "{err:#}"
        );
        drop(edge_running);
        drop(control_running);
    }
}
