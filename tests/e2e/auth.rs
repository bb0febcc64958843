//! Authentication (seed 001 table, seed 002 appendix) and throttling.

use cdp_control::model::now_ms;
use cdp_control::tokens::Tokens;
use cdp_e2e::{Pipeline, SECRET};
use serde_json::json;

const BATCH: &str = r#"{"messages":[{"header":{"schemaRef":{"id":"https://ns.adobe.com/acme/schemas/web"}},"body":{"xdmMeta":{},"xdmEntity":{"_id":"1"}}}]}"#;

#[tokio::test]
async fn tokens_missing_forged_expired_other_org_rotated_deleted() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(
            json!({"name": "secure", "orgId": "ACME@AdobeOrg", "authenticationRequired": true}),
        )
        .await;
    let id = stream["id"].as_str().unwrap();
    let batch = format!("/collection/batch/{id}");
    let ingest = format!("/stream/v0/data/{id}");
    let (key_id, api_key) = p.create_key("ACME@AdobeOrg").await;
    let token = p.token(&api_key, 3).await;

    // Missing: 401 on both endpoints.
    assert_eq!(
        p.post_with(&batch, "application/json", BATCH, None).await.0,
        401
    );
    assert_eq!(
        p.post_with(&ingest, "application/json", "{}", None).await.0,
        401
    );

    // Valid token: accepted.
    assert_eq!(
        p.post_with(&batch, "application/json", BATCH, Some(&token))
            .await
            .0,
        207
    );
    assert_eq!(
        p.post_with(&ingest, "application/json", "{\"a\":1}", Some(&token))
            .await
            .0,
        202
    );

    // Forged (signed with another secret): 403 on collection, 401 on streaming ingest.
    let key = p
        .edge_running
        .catalog
        .read()
        .api_keys
        .get(&key_id)
        .cloned()
        .unwrap();
    let (forged, _) = Tokens::new("not-the-secret")
        .issue(&key, 1, now_ms() / 1000)
        .unwrap();
    assert_eq!(
        p.post_with(&batch, "application/json", BATCH, Some(&forged))
            .await
            .0,
        403
    );
    assert_eq!(
        p.post_with(&ingest, "application/json", "{}", Some(&forged))
            .await
            .0,
        401
    );
    assert_eq!(
        p.post_with(&batch, "application/json", BATCH, Some("garbage"))
            .await
            .0,
        403
    );

    // Expired: issued two days ago for one day.
    let (expired, _) = Tokens::new(SECRET)
        .issue(&key, 1, now_ms() / 1000 - 2 * 86_400)
        .unwrap();
    let (status, resp, _) = p
        .post_with(&batch, "application/json", BATCH, Some(&expired))
        .await;
    assert_eq!(status, 403);
    assert!(
        resp["detail"].as_str().unwrap().contains("expired"),
        "{resp}"
    );
    assert_eq!(
        p.post_with(&ingest, "application/json", "{}", Some(&expired))
            .await
            .0,
        401
    );

    // A token of another org is refused.
    let (_, other_key) = p.create_key("OTHER@AdobeOrg").await;
    let other = p.token(&other_key, 1).await;
    assert_eq!(
        p.post_with(&batch, "application/json", BATCH, Some(&other))
            .await
            .0,
        403
    );

    // A token signed with the right secret for another org's key but claiming this org (only
    // a signer can make one; the development secret is public): the key decides, 403.
    let (other_key_id, _) = p.create_key("OTHER@AdobeOrg").await;
    let mut claimed = p
        .edge_running
        .catalog
        .read()
        .api_keys
        .get(&other_key_id)
        .cloned()
        .unwrap();
    claimed.org_id = "ACME@AdobeOrg".into();
    let (mismatched, _) = Tokens::new(SECRET)
        .issue(&claimed, 1, now_ms() / 1000)
        .unwrap();
    let (status, resp, _) = p
        .post_with(&batch, "application/json", BATCH, Some(&mismatched))
        .await;
    assert_eq!(status, 403, "{resp}");
    assert!(
        resp["detail"]
            .as_str()
            .unwrap()
            .contains("its API key belongs to org OTHER@AdobeOrg"),
        "{resp}"
    );

    // Rotation revokes tokens issued before it; the new secret issues working tokens.
    let rotated: serde_json::Value = p
        .http
        .post(format!("{}/api-keys/{key_id}/rotate", p.control))
        .bearer_auth(cdp_e2e::ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rotated["generation"], 2);
    p.wait_for_edge(|c| c.api_keys.get(&key_id).is_some_and(|k| k.generation == 2))
        .await;
    assert_eq!(
        p.post_with(&batch, "application/json", BATCH, Some(&token))
            .await
            .0,
        403
    );
    let fresh = p.token(rotated["apiKey"].as_str().unwrap(), 1).await;
    assert_eq!(
        p.post_with(&batch, "application/json", BATCH, Some(&fresh))
            .await
            .0,
        207
    );
    // The old secret no longer buys tokens.
    let resp = p
        .http
        .post(format!("{}/tokens", p.control))
        .json(&json!({"apiKey": api_key, "days": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Deletion revokes everything.
    let resp = p
        .http
        .delete(format!("{}/api-keys/{key_id}", p.control))
        .bearer_auth(cdp_e2e::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    p.wait_for_edge(|c| !c.api_keys.contains_key(&key_id)).await;
    assert_eq!(
        p.post_with(&batch, "application/json", BATCH, Some(&fresh))
            .await
            .0,
        403
    );

    // Exactly the three accepted messages were written.
    assert_eq!(p.raw_records(3).await.len(), 3);
}

#[tokio::test]
async fn throttled_with_retry_after() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "slow", "orgId": "acme", "rateLimit": 2}))
        .await;
    let ingest = format!("/stream/v0/data/{}", stream["id"].as_str().unwrap());
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let (status, _, headers) = p.post(&ingest, "application/json", "{\"a\":1}").await;
        if status == 429 {
            retry_after = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..2], &[202, 202], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let secs: u64 = retry_after.expect("Retry-After header").parse().unwrap();
    assert!(secs >= 1);
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert_eq!(p.raw_records(accepted).await.len(), accepted);
}

#[tokio::test]
async fn org_and_sandbox_headers_are_honoured() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "s", "orgId": "acme", "sandbox": "dev"}))
        .await;
    let ingest = format!(
        "{}/stream/v0/data/{}",
        p.edge,
        stream["id"].as_str().unwrap()
    );
    let send = |org: &'static str, sandbox: &'static str| {
        p.http
            .post(&ingest)
            .header("content-type", "application/json")
            .header("x-gw-ims-org-id", org)
            .header("x-sandbox-name", sandbox)
            .body("{\"a\":1}")
            .send()
    };
    assert_eq!(send("acme", "dev").await.unwrap().status(), 202);
    assert_eq!(send("other", "dev").await.unwrap().status(), 400);
    assert_eq!(send("acme", "prod").await.unwrap().status(), 400);
    let records = p.raw_records(1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].header("cdp-sandbox"), Some("dev"));
}
