//! Rotating `control.secret_key` (issue 19): with the old key moved to
//! `control.previous_secret_keys`, `cdp secrets reseal` seals every connection's credentials
//! again with the new key — those sealed by the old key, and those sealed before key ids
//! existed — leaves alone what it cannot open (and says so), and then has nothing left to do.

use std::process::Command;
use std::time::Duration;

use cdp_catalog::{
    CatalogRecord, CatalogView, CatalogWriter, Connection, ConnectionAuth, SecretKey, KINESIS_SPEC,
};
use cdp_contract::admin::ensure_topics;
use cdp_contract::Topics;
use cdp_test_support::{unique_name, Broker};
use serde_json::{json, Map, Value};

const ORG: &str = "ACME@AdobeOrg";
const OLD_HEX: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW_HEX: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const SPEC_NAME: &str = "Amazon Kinesis authentication credentials";

fn params(n: u32) -> Map<String, Value> {
    json!({"accessKeyId": format!("AKIA{n}"), "secretKey": format!("s3cret-{n}"), "region": "eu-west-1"})
        .as_object()
        .cloned()
        .expect("an object")
}

fn connection(id: &str, auth: ConnectionAuth) -> Connection {
    Connection {
        id: id.into(),
        name: id.into(),
        description: None,
        org_id: ORG.into(),
        sandbox: "prod".into(),
        connection_spec_id: KINESIS_SPEC.into(),
        auth: Some(auth),
        etag: "e".into(),
        created_at: 1,
        updated_at: 1,
    }
}

fn key(hex: &str) -> SecretKey {
    SecretKey::from_config(hex).expect("key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_reseals_every_connection_once() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let kafka = broker.kafka();
    let topics = Topics::new(unique_name("reseal"));
    ensure_topics(&kafka, &[cdp_catalog::topic_spec(&topics)])
        .await
        .expect("catalog topic");
    let view = CatalogView::start(&kafka, &topics).expect("catalog view");
    let writer = CatalogWriter::new(&kafka, &topics, view).expect("catalog writer");

    let old = key(OLD_HEX);
    let by_old = connection(
        "c-old",
        ConnectionAuth::seal(SPEC_NAME, &params(1), &old, "c-old", ORG),
    );
    // As control sealed before key ids: no key id, no associated data.
    let legacy: ConnectionAuth = {
        use base64::Engine as _;
        use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&[0x11u8; 32].into());
        let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let plain = serde_json::to_vec(&params(2)).expect("JSON");
        let ciphertext = cipher.encrypt(&nonce, plain.as_slice()).expect("sealed");
        let b64 = base64::engine::general_purpose::STANDARD;
        serde_json::from_value(json!({"specName": SPEC_NAME, "sealed": {
            "nonce": b64.encode(nonce), "ciphertext": b64.encode(ciphertext)}}))
        .expect("legacy record")
    };
    assert_eq!(legacy.sealed.key_id, None);
    assert!(
        connection("c-legacy", legacy.clone())
            .open_auth(&old)
            .is_ok(),
        "the legacy record opens with the old key"
    );
    let unknown = connection(
        "c-unknown",
        ConnectionAuth::seal(
            SPEC_NAME,
            &params(3),
            &key(&"3".repeat(64)),
            "c-unknown",
            ORG,
        ),
    );
    let current = connection(
        "c-current",
        ConnectionAuth::seal(SPEC_NAME, &params(4), &key(NEW_HEX), "c-current", ORG),
    );
    for c in [by_old, unknown, current] {
        writer
            .put(&CatalogRecord::Connection(c))
            .await
            .expect("write");
    }
    writer
        .put(&CatalogRecord::Connection(connection("c-legacy", legacy)))
        .await
        .expect("write");

    // The command, as an operator runs it after moving the old key aside.
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_cdp"))
            .args(["secrets", "reseal"])
            .env("CDP_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap())
            .env("CDP_TOPICS__NAMESPACE", &topics.namespace)
            .env("CDP_CONTROL__SECRET_KEY", NEW_HEX)
            .env(
                "CDP_CONTROL__PREVIOUS_SECRET_KEYS",
                format!("[\"{OLD_HEX}\"]"),
            )
            .env("RUST_LOG", "warn")
            .output()
            .expect("cdp secrets reseal")
    };
    let first = run();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&first.stdout).to_string(),
        String::from_utf8_lossy(&first.stderr).to_string(),
    );
    // c-unknown opens with neither key: named, left alone, and the run fails.
    assert_eq!(first.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("cannot open c-unknown"), "{stderr}");
    assert!(
        stdout.contains("2 connection(s) sealed again") && stdout.contains("resealed c-legacy"),
        "{stdout}"
    );

    // Both are sealed with the new key now: it opens them without the old one.
    let fresh = CatalogView::start(&kafka, &topics).expect("catalog view");
    fresh
        .caught_up(Duration::from_secs(30))
        .await
        .expect("caught up");
    let new_only = key(NEW_HEX);
    for (id, n) in [("c-old", 1), ("c-legacy", 2), ("c-current", 4)] {
        let c = fresh
            .read()
            .connections
            .get(id)
            .cloned()
            .expect("connection");
        assert_eq!(
            c.auth.as_ref().and_then(|a| a.sealed.key_id.clone()),
            Some(new_only.id()),
            "{id}"
        );
        assert_eq!(c.open_auth(&new_only).expect(id), Some(params(n)), "{id}");
    }
    let left = fresh.read().connections["c-unknown"].clone();
    assert!(left.open_auth(&new_only).is_err());

    // Nothing left to do but the one that never opens.
    let second = run();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("0 connection(s) sealed again, 3 already sealed"),
        "{stdout}"
    );
}
