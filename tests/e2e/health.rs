//! Every stage process answers `/healthz`, `/readyz` and `/metrics`: validate and the lake on
//! the health listener, control and the edge on their own. The metrics name the stages'
//! work (`cdp_<stage>_…`) after a real request went through them.

use std::time::Duration;

use cdp_e2e::{event_schema, Pipeline};
use cdp_test_support::eventually;
use serde_json::{json, Value};

async fn get(http: &reqwest::Client, url: &str) -> Result<(u16, String), reqwest::Error> {
    let r = http.get(url).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await?))
}

/// The value of the first sample of `name` whose labels contain `labels`.
fn sample(page: &str, name: &str, labels: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn stages_serve_health_readiness_and_their_metrics() {
    let p = Pipeline::start().await;
    let validate = format!(
        "http://{}",
        p.validate_running.health_addr.expect("validate health")
    );
    let lake = format!(
        "http://{}",
        p.lake_running.health_addr.expect("lake health")
    );
    // Stages of other tests in this process share the page, so look for ours by name.
    for (base, stage) in [(&validate, "validate"), (&lake, "lake")] {
        eventually(
            Duration::from_secs(30),
            "the stage to be ready",
            async || {
                let (_, body) = get(&p.http, &format!("{base}/readyz")).await.ok()?;
                let v: Value = serde_json::from_str(&body).ok()?;
                v["stages"]
                    .as_array()?
                    .iter()
                    .any(|s| s == &json!({"stage": stage, "status": "ready"}))
                    .then_some(())
            },
        )
        .await;
        let (status, body) = get(&p.http, &format!("{base}/healthz"))
            .await
            .expect("healthz");
        assert_eq!((status, body.as_str()), (200, "ok"));
    }

    let dataset = p.create_dataset("acme", event_schema()).await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "acme", "datasetId": dataset["id"]}))
        .await;
    let schema_id = dataset["schemaId"].as_str().expect("schema id");
    let message = |entity: Value| {
        json!({"header": {"schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}},
               "body": {"xdmMeta": {"schemaRef": {"id": schema_id}}, "xdmEntity": entity}})
    };
    let good = |id: &str| json!({"_id": id, "timestamp": "2026-11-26T10:00:00Z"});
    let wrong_type = json!({"_id": "bad-1", "timestamp": 1764151200});
    let body =
        json!({"messages": [message(good("ok-1")), message(good("ok-2")), message(wrong_type)]});
    let id = stream["id"].as_str().expect("stream id");
    let (status, resp, _) = p
        .post(
            &format!("/collection/batch/{id}"),
            "application/json",
            body.to_string(),
        )
        .await;
    assert_eq!(status, 207, "{resp}");

    // One body fails the schema: validate counts it by reason.
    let page = eventually(Duration::from_secs(30), "validate's metrics", async || {
        let (_, page) = get(&p.http, &format!("{validate}/metrics")).await.ok()?;
        let quarantined = sample(&page, "cdp_validate_quarantined_total", "reason=\"schema\"")?;
        let committed = sample(&page, "cdp_validate_transactions_total", "committed")?;
        let valid = sample(&page, "cdp_validate_records_out_total", "events.valid")?;
        (quarantined >= 1.0 && committed >= 1.0 && valid >= 2.0).then_some(page)
    })
    .await;
    for name in [
        "cdp_validate_records_in_total",
        "cdp_validate_transaction_duration_seconds_count",
        "cdp_validate_batch_records_count",
    ] {
        assert!(
            sample(&page, name, "").is_some_and(|v| v >= 1.0),
            "{name} in\n{page}"
        );
    }
    let page = eventually(Duration::from_secs(30), "the lake's metrics", async || {
        let (_, page) = get(&p.http, &format!("{lake}/metrics")).await.ok()?;
        sample(&page, "cdp_lake_flush_duration_seconds_count", "")
            .filter(|n| *n >= 1.0)
            .and(sample(&page, "cdp_lake_records_out_total", "events.valid"))
            .map(|_| page)
    })
    .await;
    // The lake commits files, not transactions: no transaction series that could never move.
    assert!(!page.contains("cdp_lake_transactions_total"), "{page}");
    // Control and the edge render the same process-wide page.
    for base in [&p.control, &p.edge] {
        let (status, page) = get(&p.http, &format!("{base}/metrics"))
            .await
            .expect("metrics");
        assert_eq!(status, 200);
        assert!(page.contains("cdp_validate_records_in_total"), "{base}");
    }
}
