//! Streaming segmentation (seed 003): segment definitions evaluated on every profile update,
//! membership changes on the Avro and JSON membership topics, exits by timer with no new data.

use std::time::Duration;

use cdp_catalog::{CatalogRecord, SegmentDefinition};
use cdp_e2e::Pipeline;
use cdp_segment::membership::{MembershipChange, Status, Trigger};
use cdp_test_support::eventually;
use serde_json::json;

use crate::profile::{event, event_stream, send, ORG};

/// Writes a streaming definition to the catalog as the definitions API does.
async fn define(p: &Pipeline, id: &str, expression: &str) {
    let writer = cdp_control::CatalogWriter::new(
        &p.config.kafka,
        &p.config.topics,
        p.control_running.catalog.clone(),
    )
    .expect("catalog writer");
    let now = cdp_contract::clock::now_ms();
    writer
        .put(&CatalogRecord::Segment(SegmentDefinition {
            id: id.into(),
            name: id.into(),
            description: None,
            org_id: ORG.into(),
            sandbox: "prod".into(),
            schema_name: "_xdm.context.profile".into(),
            expression: expression.into(),
            streaming: true,
            classification: "single event".into(),
            profile_only: false,
            creation_time: now,
            update_time: now,
        }))
        .await
        .expect("definition written");
}

async fn memberships(p: &Pipeline, at_least: usize) -> Vec<MembershipChange> {
    p.broker
        .read_committed_settle(
            &p.config.topics.segment_membership_json(),
            at_least,
            Duration::from_secs(20),
            Duration::from_millis(200),
        )
        .await
        .iter()
        .map(|r| serde_json::from_value(r.json()).expect("a membership record"))
        .collect()
}

#[tokio::test]
async fn a_purchase_qualifies_at_once_and_exits_by_timer_when_its_window_passes() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let _segment = p.start_segment().await;
    define(
        &p,
        "recent-buyers",
        r#"xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 6 seconds before now)"#,
    )
    .await;
    let (dataset, stream) = event_stream(&p).await;
    let mut purchase = event("buy-1", json!({"CRMID": [{"id": "hank", "primary": true}]}));
    purchase["eventType"] = json!("commerce.purchases");
    let purchased_ms = purchase["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .expect("the event's timestamp");
    send(&p, &stream, &dataset, &[purchase]).await;

    let mut changes = Vec::new();
    eventually(
        Duration::from_secs(30),
        "hank realized in recent-buyers",
        async || {
            changes = memberships(&p, 1).await;
            !changes.is_empty()
        },
    )
    .await;
    let entered = changes[0].clone();
    assert_eq!(entered.segment_id, "recent-buyers");
    assert_eq!(entered.status, Status::Realized);
    assert_eq!(entered.trigger, Trigger::Event);
    assert_eq!(entered.event_id.as_deref(), Some("buy-1"));
    assert!(entered
        .identities
        .iter()
        .any(|i| i.ns == "CRMID" && i.id == "hank"));
    assert!(
        entered.time < purchased_ms + 6_000,
        "entered while the purchase is in the window"
    );

    // No new event: the timer makes hank exit when the purchase leaves the 6-second window.
    eventually(
        Duration::from_secs(30),
        "hank exited by timer",
        async || {
            changes = memberships(&p, 2).await;
            changes.len() >= 2
        },
    )
    .await;
    assert_eq!(changes.len(), 2, "one entry, one exit: {changes:?}");
    let exited = &changes[1];
    assert_eq!(exited.status, Status::Exited);
    assert_eq!(exited.trigger, Trigger::Timer);
    let late = exited.time - (purchased_ms + 6_000);
    assert!(
        (0..3_000).contains(&late),
        "exited when the purchase left the window, not before and not much after ({late} ms)"
    );

    // The same two changes on the Avro topic, decoded through the project's registry.
    let avro = p
        .broker
        .read_committed(
            &p.config.topics.segment_membership(),
            2,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(avro.len(), 2);
    let decoder = schema_registry_converter::async_impl::avro::AvroDecoder::new(
        schema_registry_converter::async_impl::schema_registry::SrSettings::new(p.control.clone()),
    );
    let mut statuses = Vec::new();
    for r in &avro {
        let decoded = decoder
            .decode(Some(&r.value))
            .await
            .expect("decoded through the registry");
        let apache_avro::types::Value::Record(fields) = decoded.value else {
            panic!("a record")
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            field("profileId"),
            Some(apache_avro::types::Value::String(
                entered.profile_id.clone()
            ))
        );
        if let Some(apache_avro::types::Value::Enum(_, s)) = field("status") {
            statuses.push(s);
        }
    }
    assert_eq!(statuses, vec!["realized".to_string(), "exited".to_string()]);

    // And on the profile, through the Profile API.
    eventually(
        Duration::from_secs(10),
        "the exit on hank's profile",
        async || {
            let (_, body) = crate::profile::api(
                &p,
                "/access/entities?schema.name=_xdm.context.profile&entityId=hank&entityIdNS=CRMID",
            )
            .await;
            body[&entered.profile_id]["entity"]["segmentMembership"]["ups"]["recent-buyers"]
                ["status"]
                == "exited"
        },
    )
    .await;
}
