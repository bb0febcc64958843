//! `GET /segment/definitions/{id}/explain` on a real profile (moved here from control's own
//! tests when profiles stopped being copied into control): the profile is built by the real
//! stages from a profile record and an event sent through the edge, and control reads it where
//! the engine holds it.

use std::time::Duration;

use cdp_e2e::{Pipeline, ADMIN};
use cdp_test_support::eventually;
use serde_json::{json, Value};

use crate::profile::{send, ORG};

const WAIT: Duration = Duration::from_secs(30);
const PROFILE: &str = "_xdm.context.profile";
const PATH: &str = "/segment/definitions";

const SINGLE_EVENT: &str =
    r#"xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 3 hours before now)"#;
const PROFILE_ONLY: &str = r#"person.birthYear < 1970 and homeAddress.countryCode = "US""#;

fn detail(v: &Value) -> &str {
    v["detail"].as_str().unwrap_or_default()
}

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req
        .bearer_auth(ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Creates a definition through the API; its id.
async fn create(p: &Pipeline, name: &str, pql: &str) -> String {
    let body = json!({
        "schema": {"name": PROFILE},
        "name": name,
        "expression": {"type": "PQL", "format": "pql/text", "value": pql},
    });
    let (status, body) = call(p.http.post(format!("{}{PATH}", p.control)).json(&body)).await;
    assert_eq!(status, 200, "{name}: {body}");
    body["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn explain_evaluates_a_definition_on_a_profile() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    // The org's XDM schemas, so the definitions' paths check: people (profile records) and
    // web events.
    let n = cdp_test_support::unique_name("explain");
    let people = p
        .create_dataset_adjusted(
            ORG,
            &format!("https://ns.adobe.com/acme/schemas/people-{n}"),
            json!({"type": "object", "properties": {
                "identityMap": {"type": "object"},
                "person": {"type": "object", "properties": {
                    "birthYear": {"type": "integer"},
                    "birthDate": {"type": "string", "format": "date"}}},
                "homeAddress": {"type": "object", "properties": {
                    "countryCode": {"type": "string"}}}}}),
            |f| f.schema.class = PROFILE.into(),
        )
        .await;
    let web = p
        .create_dataset_with(
            ORG,
            &format!("https://ns.adobe.com/acme/schemas/web-{n}"),
            json!({"type": "object", "required": ["_id", "timestamp"], "properties": {
                "_id": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "eventType": {"type": "string"},
                "identityMap": {"type": "object"},
                "commerce": {"type": "object", "properties": {
                    "order": {"type": "object", "properties": {
                        "priceTotal": {"type": "number"}}}}}}}),
        )
        .await;
    let people_stream = p
        .create_stream(json!({"name": "people", "orgId": ORG, "datasetId": people["id"]}))
        .await;
    let web_stream = p
        .create_stream(json!({"name": "web", "orgId": ORG, "datasetId": web["id"]}))
        .await;
    let older = create(&p, "Older Americans", PROFILE_ONLY).await;
    let buyers = create(&p, "Recent buyers", SINGLE_EVENT).await;
    let of_older = create(&p, "Of older ones", &format!(r#"inSegment("{older}")"#)).await;

    let crm = || json!({"CRMID": [{"id": "c-1", "primary": true}]});
    send(
        &p,
        &people_stream,
        &people,
        &[json!({"identityMap": crm(), "person": {"birthYear": 1960}, "homeAddress": {"countryCode": "US"}})],
    )
    .await;
    let bought = chrono::Utc::now() - chrono::Duration::hours(1);
    let bought_ms = bought.timestamp_millis();
    send(
        &p,
        &web_stream,
        &web,
        &[
            json!({"_id": "e-1", "eventType": "commerce.purchases", "identityMap": crm(),
                 "timestamp": bought.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
        ],
    )
    .await;

    let explain = |id: String| {
        let p = &p;
        async move {
            call(
                p.http
                    .get(format!("{}{PATH}/{id}/explain", p.control))
                    .query(&[("entityId", "c-1"), ("entityIdNS", "CRMID")]),
            )
            .await
        }
    };
    let body = eventually(WAIT, "the profile's event is held", async || {
        let (status, body) = explain(buyers.clone()).await;
        if status == 200 && body["qualified"] == json!(true) {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await;
    let (_, members) = crate::profile::api(&p, "/identity/cluster/members?xid=CRMID:c-1").await;
    assert_eq!(body["segmentId"], buyers);
    assert_eq!(body["profileId"], members["profileId"], "{members}");
    // Three hours after the purchase, the profile leaves.
    let next = body["nextChange"].as_str().expect("nextChange");
    let next_ms = chrono::DateTime::parse_from_rfc3339(next)
        .expect("RFC 3339")
        .timestamp_millis();
    assert_eq!(next_ms, bought_ms + 3 * 3_600_000, "{body}");
    assert!(
        body["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("commerce.purchases")),
        "{body}"
    );

    let (status, body) = explain(older.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["qualified"], true, "{body}");
    assert_eq!(body["nextChange"], Value::Null);
    assert!(
        body["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("person.birthYear = 1960")),
        "{body}"
    );

    // Segment of segments: the membership the engine holds counts.
    let body = eventually(WAIT, "the profile in the inner segment", async || {
        let (status, body) = explain(of_older.clone()).await;
        if status == 200 && body["qualified"] == json!(true) {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await;
    assert!(
        body["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("is a member")),
        "{body}"
    );

    // An identity no profile has; a missing parameter; an unknown definition.
    let (status, body) = call(
        p.http
            .get(format!("{}{PATH}/{older}/explain", p.control))
            .query(&[("entityId", "nobody"), ("entityIdNS", "CRMID")]),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(detail(&body).contains("CRMID:nobody"), "{body}");
    let (status, body) = call(
        p.http
            .get(format!("{}{PATH}/{older}/explain", p.control))
            .query(&[("entityId", "c-1")]),
    )
    .await;
    assert_eq!(status, 400);
    assert!(detail(&body).contains("entityIdNS"), "{body}");
    let (status, _) = call(
        p.http
            .get(format!("{}{PATH}/nope/explain", p.control))
            .query(&[("entityId", "c-1"), ("entityIdNS", "CRMID")]),
    )
    .await;
    assert_eq!(status, 404);
}
