//! The dashboard in a real browser (Debian's headless Chromium): events through the edge, a
//! segment with members, then what a person sees — sign-in, the dataset's record and failed
//! counts, the activity chart's points, the batch's failed records with reasons, the segment's
//! members, the stream's live events, and a buyer's profile looked up by identity (its
//! identities, graph history, events and segment with the explain). A screenshot of each page
//! is kept in `target/browser-artefacts/`.

use std::time::Duration;

use cdp_e2e::{Pipeline, ADMIN};
use cdp_test_support::browser::{artefact_dir, browser_script, run_script};
use cdp_test_support::eventually;
use serde_json::{json, Value};

use crate::profile::{api, event, event_stream, record_stream, send, ORG};

fn message(dataset: &Value, org: &str, entity: Value) -> Value {
    let schema = dataset["schemaId"].as_str().expect("schemaId");
    json!({"header": {"schemaRef": {"id": schema, "contentType": "application/vnd.adobe.xed-full+json;version=1"},
                      "imsOrgId": org, "datasetId": dataset["id"]},
           "body": {"xdmMeta": {"schemaRef": {"id": schema}}, "xdmEntity": entity}})
}

#[tokio::test]
async fn the_dashboard_shows_dataset_activity_batch_errors_segments_and_live_events() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let resp = p
        .http
        .post(format!("{}/segment/definitions", p.control))
        .bearer_auth(ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .json(
            &json!({"name": "buyers", "schema": {"name": "_xdm.context.profile"},
                      "expression": {"type": "PQL", "format": "pql/text",
                                     "value": "xEvent.any(eventType = \"commerce.purchases\")"}}),
        )
        .send()
        .await
        .expect("POST /segment/definitions");
    assert_eq!(resp.status(), 200);
    let segment: Value = resp.json().await.expect("definition JSON");
    let segment_id = segment["id"].as_str().expect("segment id").to_string();
    let (dataset, stream) = event_stream(&p).await;
    let dataset_id = dataset["id"].as_str().expect("dataset id").to_string();

    // Batch 1: four buyers and two page views land; two events without a timestamp fail
    // validation; one message for another org is refused by the edge itself.
    let mut first = Vec::new();
    for n in 0..4 {
        let mut e = event(
            &format!("buy-{n}"),
            json!({"CRMID": [{"id": format!("buyer-{n}"), "primary": true}]}),
        );
        e["eventType"] = json!("commerce.purchases");
        first.push(message(&dataset, ORG, e));
    }
    for n in 0..2 {
        let e = event(
            &format!("view-{n}"),
            json!({"CRMID": [{"id": "viewer", "primary": true}]}),
        );
        first.push(message(&dataset, ORG, e));
    }
    for n in 0..2 {
        let mut e = event(
            &format!("bad-{n}"),
            json!({"CRMID": [{"id": "viewer", "primary": true}]}),
        );
        e.as_object_mut().expect("an object").remove("timestamp");
        first.push(message(&dataset, ORG, e));
    }
    first.push(message(
        &dataset,
        "OTHER@AdobeOrg",
        event("foreign", json!({"CRMID": [{"id": "x", "primary": true}]})),
    ));
    let resp = p.post_batch(&stream, first).await;
    let failing_batch = resp["batchId"].as_str().expect("batchId").to_string();
    let refused = resp["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .filter(|r| r.get("statusCode").is_some())
        .count();
    assert_eq!(
        refused, 1,
        "the edge refuses only the other org's message: {resp}"
    );
    // Batch 2: three page views, all fine.
    let second: Vec<Value> = (0..3)
        .map(|n| {
            message(
                &dataset,
                ORG,
                event(
                    &format!("later-{n}"),
                    json!({"CRMID": [{"id": "viewer", "primary": true}]}),
                ),
            )
        })
        .collect();
    p.post_batch(&stream, second).await;

    // What the page must show is first awaited through the JSON API and the page itself, so
    // the browser run asserts on a settled state.
    eventually(
        Duration::from_secs(60),
        "the dataset's 9 records and 3 failed records",
        async || {
            let v: Value = p
                .http
                .get(format!("{}/datasets/{dataset_id}", p.control))
                .bearer_auth(ADMIN)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if v["recordCount"] == 9 && v["failedCount"] == 3 && v["batchCount"] == 2 {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "the segments page to show 4 members",
        async || {
            let html = p
                .http
                .get(format!("{}/ui/segments", p.control))
                .bearer_auth(ADMIN)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let marker = format!(r#"id="members-{segment_id}">4<"#);
            if html.contains(&marker) {
                Ok(())
            } else {
                Err(format!("no {marker}"))
            }
        },
    )
    .await;
    // A CRM record gives buyer-0 an email: the profile page shows it among the attributes.
    let (crm, crm_stream) = record_stream(&p, "crm").await;
    send(
        &p,
        &crm_stream,
        &crm,
        &[
            json!({"identityMap": {"CRMID": [{"id": "buyer-0", "primary": true}]},
                 "person": {"email": "buyer-0@example.com"}}),
        ],
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "buyer-0's email in the Profile API",
        async || {
            let (status, body) = api(
                &p,
                "/access/entities?schema.name=_xdm.context.profile&entityId=buyer-0&entityIdNS=CRMID",
            )
            .await;
            if status == 200 && body.to_string().contains("buyer-0@example.com") {
                Ok(())
            } else {
                Err(format!("{status}: {body}"))
            }
        },
    )
    .await;

    let shots = artefact_dir();
    let seen = run_script(
        &browser_script("dashboard.mjs"),
        &[
            ("CONTROL_URL", p.control.clone()),
            ("ADMIN_TOKEN", ADMIN.to_string()),
            ("DATASET_ID", dataset_id.clone()),
            (
                "STREAM_ID",
                stream["id"].as_str().expect("stream id").to_string(),
            ),
            ("BATCH_ID", failing_batch.clone()),
            ("SEGMENT_ID", segment_id.clone()),
            ("ORG_ID", ORG.to_string()),
            ("PROFILE_IDENTITY", "buyer-0".to_string()),
            ("SCREENSHOT_DIR", shots.display().to_string()),
        ],
        Duration::from_secs(90),
    )
    .await;

    // Sign-in: a wrong token is refused on the page, the right one lands on the overview.
    assert_eq!(seen["login"]["redirectedToLogin"], true, "{seen}");
    assert!(
        seen["login"]["wrongTokenMessage"]
            .as_str()
            .is_some_and(|m| m.contains("not the admin token")),
        "{seen}"
    );
    assert_eq!(
        seen["login"]["backTo"],
        format!("/ui/datasets/{dataset_id}"),
        "signing in returns to the page asked for: {seen}"
    );
    assert_eq!(seen["login"]["landedOn"], "/ui", "{seen}");
    // The overview lists the dataset with its counts.
    assert_eq!(seen["overview"]["records"], "9", "{seen}");
    assert_eq!(seen["overview"]["failed"], "3", "{seen}");
    // Dataset activity: totals, one chart point per minute of the hour, the chart's points add
    // up to the totals (all sent this minute or the last), two batches listed.
    let activity = &seen["dataset"];
    assert_eq!(activity["recordCount"], "9", "{seen}");
    assert_eq!(activity["failedCount"], "3", "{seen}");
    assert_eq!(activity["chartPoints"], 60, "{seen}");
    assert_eq!(activity["chartRecords"], 9, "{seen}");
    assert_eq!(activity["chartFailed"], 3, "{seen}");
    assert_eq!(activity["batchRows"], 2, "{seen}");
    // The failed link of the first batch opens its failed records with their reasons.
    let batch = &seen["batch"];
    assert_eq!(
        batch["path"],
        format!("/ui/batches/{failing_batch}"),
        "{seen}"
    );
    assert_eq!(batch["failedRows"], 3, "{seen}");
    let reasons = batch["reasons"].as_array().expect("reasons");
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.as_str().is_some_and(|r| r.contains("timestamp")))
            .count(),
        2,
        "two records fail for their missing timestamp: {seen}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("ims org"))),
        "the edge's refusal says the org is wrong: {seen}"
    );
    assert_eq!(
        batch["stages"],
        json!(["edge", "validate", "validate"]),
        "{seen}"
    );
    // The segment: four members, four entries in the chart.
    assert_eq!(seen["segment"]["members"], "4", "{seen}");
    assert_eq!(seen["segment"]["chartPoints"], 60, "{seen}");
    assert_eq!(seen["segment"]["chartEntries"], 4, "{seen}");
    // Live events: the 11 the edge accepted and the 3 refusals, newest first.
    let live = &seen["live"];
    assert_eq!(live["accepted"], 11, "{seen}");
    assert_eq!(live["refused"], 3, "{seen}");
    assert_eq!(live["refreshes"], true, "{seen}");
    // The profile page: an identity nobody has is said so; buyer-0's profile shows its
    // identity, the graph change that created it, its purchase, and its one segment with the
    // explain of why it is in it.
    let profile = &seen["profile"];
    assert!(
        profile["unknown"].as_str().is_some_and(
            |m| m.contains("No profile has the identity") && m.contains("nobody-has-this")
        ),
        "{seen}"
    );
    assert!(
        profile["query"]
            .as_str()
            .is_some_and(|q| q.contains("ns=CRMID") && q.contains("id=buyer-0")),
        "the form's lookup is a link: {seen}"
    );
    assert!(
        profile["profileId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{seen}"
    );
    assert!(
        profile["identities"].as_array().is_some_and(
            |ids| ids.len() == 1 && ids[0].as_str().is_some_and(|i| i.contains("buyer-0"))
        ),
        "{seen}"
    );
    assert!(
        profile["historyRows"].as_u64().is_some_and(|n| n >= 1),
        "{seen}"
    );
    assert_eq!(
        profile["eventTypes"],
        json!(["commerce.purchases"]),
        "{seen}"
    );
    assert!(
        profile["attributes"]
            .as_array()
            .is_some_and(|a| a.len() == 1
                && a[0]
                    .as_str()
                    .is_some_and(|t| t.contains("buyer-0@example.com"))),
        "the CRM record's attributes: {seen}"
    );
    let memberships = profile["memberships"].as_array().expect("memberships");
    assert_eq!(memberships.len(), 1, "{seen}");
    assert_eq!(memberships[0]["id"], segment_id.as_str(), "{seen}");
    assert_eq!(memberships[0]["segment"], "buyers", "{seen}");
    assert_eq!(memberships[0]["status"], "realized", "{seen}");
    assert!(
        memberships[0]["explain"].as_str().is_some_and(
            |e| e.starts_with("qualified because") && e.contains("commerce.purchases")
        ),
        "{seen}"
    );
    for name in [
        "dashboard-profile.png",
        "dashboard-dataset.png",
        "dashboard-batch.png",
        "dashboard-segments.png",
        "dashboard-live.png",
    ] {
        let shot = shots.join(name);
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "{} is missing or blank ({size} bytes)",
            shot.display()
        );
    }
}

/// Dashboard sessions live on the server: they carry an expiry, a sign-out ends them there (a
/// copy of the cookie is dead), the cookie is `Secure` behind TLS, and failed sign-ins are
/// throttled (429).
#[tokio::test]
async fn dashboard_sessions_expire_end_at_sign_out_and_sign_ins_are_throttled() {
    let p = Pipeline::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = format!("{}/ui/login", p.control);
    let sign_in = |token: &str, tls: bool| {
        let mut req = http
            .post(&login)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&next=%2Fui"));
        if tls {
            req = req.header("x-forwarded-proto", "https");
        }
        req.send()
    };
    let cookie_of = |resp: &reqwest::Response| {
        resp.headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };

    let resp = sign_in(ADMIN, false).await.expect("sign in");
    assert_eq!(resp.status(), 303);
    let set = cookie_of(&resp);
    assert!(
        set.contains("HttpOnly")
            && set.contains("SameSite=Strict")
            && set.contains("Max-Age=43200"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let session = set.split(';').next().unwrap_or_default().to_string();
    assert!(
        !session.contains(ADMIN),
        "the cookie is an id, not the token"
    );
    let page = |cookie: String| {
        http.get(format!("{}/ui", p.control))
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(page(session.clone()).await.expect("page").status(), 200);

    let behind_tls = sign_in(ADMIN, true).await.expect("sign in over TLS");
    assert!(
        cookie_of(&behind_tls).contains("; Secure"),
        "{}",
        cookie_of(&behind_tls)
    );

    // Sign-out ends the session on the server: the same cookie no longer opens a page.
    let out = http
        .post(format!("{}/ui/logout", p.control))
        .header("cookie", session.clone())
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), 303);
    let after = page(session).await.expect("page");
    assert_eq!(after.status(), 303, "sent to the sign-in form");

    // Ten wrong guesses a minute, then 429 with Retry-After, even for the right token.
    for _ in 0..10 {
        assert_eq!(sign_in("guess", false).await.expect("guess").status(), 401);
    }
    let throttled = sign_in(ADMIN, false).await.expect("throttled");
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().get("retry-after").is_some());
}
