//! Avro values against a real broker: the schema is registered in the schemas log under its
//! TopicRecordNameStrategy subject, the message is in the Confluent wire format, and the datum
//! decodes with the registered schema back to the entity.

use apache_avro::reader::datum::GenericDatumReader;
use cdp_contract::Topics;
use cdp_control::XdmSchema;
use cdp_registry::avro_to_json;
use cdp_registry::confluent::SchemaLog;
use cdp_test_support::Broker;
use cdp_validate::{AvroValueError, AvroValues};
use serde_json::json;

fn schema() -> XdmSchema {
    XdmSchema {
        org_id: None,
        id: "https://ns.adobe.com/acme/schemas/orders".into(),
        version: 1,
        title: "orders".into(),
        tenant: "acme".into(),
        class: "_xdm.context.experienceevent".into(),
        field_groups: vec![],
        profile_enabled: true,
        definition: json!({
            "type": "object",
            "required": ["_id", "timestamp"],
            "properties": {
                "_id": {"type": "string"},
                "timestamp": {"type": "string"},
                "commerce": {
                    "type": "object",
                    "properties": {
                        "order": {
                            "type": "object",
                            "additionalProperties": false,
                            "properties": {
                                "priceTotal": {"type": "number"},
                                "currencyCode": {"type": "string"},
                                "quantity": {"type": "integer"}
                            }
                        }
                    }
                }
            }
        }),
        created_at: 0,
    }
}

// The stage encodes inside spawned tasks.
fn _encode_is_send<'a>(
    values: &'a AvroValues,
    schema: &'a XdmSchema,
    entity: &'a serde_json::Value,
) -> impl std::future::Future + Send + 'a {
    values.encode(schema, entity)
}

/// A broker, the schemas log on it, and an encoder for the default events.valid topic.
async fn started() -> (Broker, Topics, SchemaLog, AvroValues) {
    let broker = Broker::start();
    let topics = Topics::new(cdp_test_support::unique_name("avro-values"));
    let log = SchemaLog::start(&broker.kafka(), &topics)
        .await
        .expect("schemas log");
    let values = AvroValues::new(log.clone(), topics.events_valid());
    (broker, topics, log, values)
}

/// Splits a Confluent wire-format message into its schema id and datum.
fn wire(bytes: &[u8]) -> (u32, &[u8]) {
    assert_eq!(bytes[0], 0, "magic byte");
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    (id, &bytes[5..])
}

#[tokio::test]
async fn registers_encodes_and_decodes_back() {
    let (_broker, topics, log, values) = started().await;
    let schema = schema();
    // `quantity` is left out (optional), `channel` is undeclared in an open object.
    let entity = json!({
        "_id": "e1",
        "timestamp": "2026-11-26T10:00:00Z",
        "commerce": {
            "order": {"priceTotal": 12.5, "currencyCode": "EUR"},
            "channel": "web"
        }
    });

    let bytes = values.encode(&schema, &entity).await.expect("encode");
    let (id, datum) = wire(&bytes);

    let subject = format!("{}-xdm.acme.experienceevent_orders", topics.events_valid());
    let registered = {
        let state = log.read();
        assert_eq!(
            state.subjects.get(&subject),
            Some(&vec![id]),
            "subjects: {:?}",
            state.subjects.keys().collect::<Vec<_>>()
        );
        state
            .schemas
            .get(&id)
            .expect("id in the log")
            .parsed
            .clone()
    };
    let decoded = GenericDatumReader::builder(&registered)
        .build()
        .and_then(|r| r.read_value(&mut &datum[..]))
        .expect("decode");
    assert_eq!(avro_to_json(&decoded), entity);

    // Cached: no new registration; a fresh cache gets the same id from the log.
    let again = values.encode(&schema, &entity).await.expect("encode again");
    assert_eq!(wire(&again).0, id);
    let fresh = AvroValues::new(log.clone(), topics.events_valid());
    let third = fresh.encode(&schema, &entity).await.expect("encode fresh");
    assert_eq!(wire(&third).0, id);
    assert_eq!(log.read().subjects[&subject], vec![id]);

    // A value that does not fit is an error naming the field, not a panic.
    let wrong = json!({
        "_id": "e2",
        "timestamp": "2026-11-26T10:00:00Z",
        "commerce": {"order": {"priceTotal": "twelve"}}
    });
    let err = values.encode(&schema, &wrong).await.unwrap_err();
    assert!(matches!(err, AvroValueError::Value(_)), "{err:?}");
    assert!(err.to_string().contains("priceTotal"), "{err}");

    let missing = json!({"_id": "e3"});
    let err = values.encode(&schema, &missing).await.unwrap_err();
    assert!(err.to_string().contains("timestamp"), "{err}");
}

#[tokio::test]
async fn versions_of_one_xdm_schema_share_a_subject_and_others_do_not() {
    let (_broker, topics, log, values) = started().await;
    let v1 = schema();
    let mut v2 = schema();
    v2.version = 2;
    v2.definition["properties"]["note"] = json!({"type": "string"});
    let mut other = schema();
    other.id = "https://ns.adobe.com/acme/schemas/visits".into();
    other.definition = json!({"type": "object", "required": ["_id"],
        "properties": {"_id": {"type": "integer"}}});

    let entity = json!({"_id": "e1", "timestamp": "t"});
    let a = values.encode(&v1, &entity).await.expect("v1");
    let b = values
        .encode(&v2, &entity)
        .await
        .expect("v2 (backward compatible)");
    let c = values
        .encode(&other, &json!({"_id": 7}))
        .await
        .expect("an unrelated schema on the same topic");
    let ids: Vec<u32> = [&a, &b, &c].iter().map(|m| wire(m).0).collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");

    // A version the subject's BACKWARD rule refuses is an error, not a new version.
    let mut v3 = schema();
    v3.version = 3;
    v3.definition["properties"]["_id"] = json!({"type": "integer"});
    let err = values
        .encode(&v3, &json!({"_id": 1, "timestamp": "t"}))
        .await
        .unwrap_err();
    assert!(matches!(err, AvroValueError::Refused { .. }), "{err:?}");

    let state = log.read();
    let orders = format!("{}-xdm.acme.experienceevent_orders", topics.events_valid());
    let visits = format!("{}-xdm.acme.experienceevent_visits", topics.events_valid());
    assert_eq!(state.subjects[&orders], vec![ids[0], ids[1]]);
    assert_eq!(state.subjects[&visits], vec![ids[2]]);
}
