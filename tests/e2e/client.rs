//! The Rust SDK (`cdp-client`) against the real edge and control: an authenticated, throttled
//! stream, an API key exchanged for a token by the client, valid and invalid events — every
//! valid event on the raw topic exactly once, every invalid one refused with the edge's words.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cdp_client::{Auth, Client, ClientError, Event, Outcome};
use cdp_e2e::{Pipeline, WEB_SCHEMA};
use serde_json::json;

const ORG: &str = "ACME@AdobeOrg";

#[tokio::test]
async fn client_retries_throttling_and_delivers_every_valid_event_once() {
    let p = Pipeline::start().await;
    // Three requests per second: the client's batches come faster than that.
    let stream = p
        .create_stream(
            json!({"name": "sdk", "orgId": ORG, "authenticationRequired": true, "rateLimit": 3}),
        )
        .await;
    let stream_id = stream["id"].as_str().unwrap().to_string();
    let dataset_id = stream["datasetId"].as_str().unwrap().to_string();
    let (_, api_key) = p.create_key(ORG).await;

    let client = Client::builder(&p.edge, &stream_id)
        .org_id(ORG)
        .dataset_id(&dataset_id)
        .schema_id(WEB_SCHEMA)
        .schema_version(1)
        .auth(Auth::ApiKey {
            control_url: p.control.clone(),
            api_key,
        })
        // The edge checks each body against the dataset's schema, so the invalid events are
        // refused in the 207 answer.
        .sync_validation(true)
        .batch_size(20)
        .linger(Duration::from_millis(20))
        .max_in_flight(2)
        .build()
        .unwrap();

    let started = Instant::now();
    let mut receipts = Vec::new();
    for i in 0..300u32 {
        let profile = i % 25;
        let valid = i % 10 != 3;
        let mut entity = json!({"eventType": "web.webpagedetails.pageViews", "n": i});
        if !valid {
            // A number where the schema wants an RFC 3339 string.
            entity["timestamp"] = json!(1_764_237_600);
            entity["_id"] = json!(format!("invalid-{i}"));
        }
        let event = Event::new(entity).with_identity("ECID", format!("{profile:038}"), true);
        let receipt = client.send(event).await.unwrap();
        receipts.push((valid, receipt));
    }
    client.flush().await.unwrap();
    let took = started.elapsed();

    let mut accepted: HashMap<String, String> = HashMap::new();
    let mut refused = 0;
    for (valid, receipt) in receipts {
        let id = receipt.id().to_string();
        match (valid, receipt.await) {
            (true, Outcome::Accepted { xaction_id, .. }) => {
                assert!(accepted.insert(id, xaction_id).is_none(), "ids are unique");
            }
            (
                false,
                Outcome::Refused {
                    status_code,
                    message,
                    batch_id,
                },
            ) => {
                refused += 1;
                assert_eq!(status_code, 400);
                assert!(batch_id.is_some());
                assert!(
                    message.starts_with(&format!("inletId: [{stream_id}] imsOrgId: [{ORG}] Message failed validation: /timestamp")),
                    "{message}"
                );
            }
            (valid, outcome) => panic!("{id} (valid: {valid}): {outcome:?}"),
        }
    }
    assert_eq!((accepted.len(), refused), (270, 30));

    let stats = client.stats();
    assert_eq!(
        (stats.sent, stats.accepted, stats.refused, stats.failed),
        (300, 270, 30, 0)
    );
    // 15 batches at 3 requests per second (a burst of 3): the edge throttled the client,
    // which waited for Retry-After and sent again.
    assert!(stats.retries >= 1, "{stats:?}");
    assert!(stats.batches >= 15, "{stats:?}");
    assert!(took >= Duration::from_secs(2), "throttled: {took:?}");

    // Every valid event exactly once on the raw topic, as the receipt said, keyed by its
    // primary identity; no invalid one.
    let records = p.raw_records(270).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &records {
        let entity = &r.json()["body"]["xdmEntity"];
        let id = entity["_id"].as_str().unwrap().to_string();
        let xaction = accepted
            .get(&id)
            .unwrap_or_else(|| panic!("{id} on the raw topic was not accepted"));
        assert_eq!(r.header("cdp-xaction-id"), Some(xaction.as_str()));
        assert_eq!(r.header("cdp-stream-id"), Some(stream_id.as_str()));
        let ecid = entity["identityMap"]["ECID"][0]["id"].as_str().unwrap();
        assert_eq!(r.key.as_deref(), Some(format!("ECID:{ecid}").as_str()));
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(records.len(), 270);
    assert_eq!(seen.len(), 270);
    assert!(seen.values().all(|n| *n == 1));

    // Without credentials the edge refuses the stream's requests: a typed failure, no retry.
    let anonymous = Client::builder(&p.edge, &stream_id)
        .schema_id(WEB_SCHEMA)
        .build()
        .unwrap();
    match anonymous.send(json!({})).await.unwrap().await {
        Outcome::Failed(e) => assert!(
            matches!(e.as_ref(), ClientError::Unauthorized { status: 401, .. }),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(anonymous.stats().retries, 0);
    anonymous.close().await.unwrap();
    client.close().await.unwrap();
}
