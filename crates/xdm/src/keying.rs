//! The key of an event: the profile's primary identity, so one profile's events, state and
//! timers share a partition. The identity marked primary in `identityMap` wins; else the first
//! identity of the configured namespaces, in their order; else the first identity of any
//! namespace (sorted); else the event's `_id`; else the caller's fallback.
//!
//! It reads only the fields it needs from the JSON text, without building a tree: it runs for
//! every event at the edge and again in the validate stage.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize)]
struct KeyView<'a> {
    #[serde(borrow, default, rename = "identityMap")]
    identity_map: Option<BTreeMap<Cow<'a, str>, Vec<Identity<'a>>>>,
    #[serde(borrow, default, rename = "_id")]
    id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Identity<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    primary: Option<bool>,
}

/// `entity` is the JSON text of an XDM entity or a plain record. A shape this does not
/// understand (an identity map of the wrong type) falls back to `fallback`.
pub fn partition_key(entity: Option<&str>, namespace_order: &[String], fallback: &str) -> String {
    let Some(view) = entity.and_then(|e| serde_json::from_str::<KeyView<'_>>(e).ok()) else {
        return fallback.to_string();
    };
    if let Some(map) = &view.identity_map {
        fn with_id(ids: &[Identity<'_>]) -> Option<String> {
            ids.iter().find_map(|i| i.id.as_deref().map(str::to_string))
        }
        for (namespace, ids) in map {
            for identity in ids {
                if let (Some(true), Some(value)) = (identity.primary, &identity.id) {
                    return format!("{namespace}:{value}");
                }
            }
        }
        for namespace in namespace_order {
            if let Some(value) = map.get(namespace.as_str()).and_then(|ids| with_id(ids)) {
                return format!("{namespace}:{value}");
            }
        }
        for (namespace, ids) in map {
            if let Some(value) = with_id(ids) {
                return format!("{namespace}:{value}");
            }
        }
    }
    match view.id {
        Some(id) => format!("_id:{id}"),
        None => fallback.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Vec<String> {
        vec!["Email".into(), "ECID".into()]
    }

    #[test]
    fn primary_identity_wins() {
        let e = r#"{"_id": "e1", "identityMap": {
            "ECID": [{"id": "123"}],
            "Phone": [{"id": "555", "primary": true}]
        }}"#;
        assert_eq!(partition_key(Some(e), &order(), "x"), "Phone:555");
    }

    #[test]
    fn namespace_order_then_any_then_id_then_fallback() {
        let e = r#"{"identityMap": {"ECID": [{"id": "123"}], "Email": [{"id": "a@b"}]}}"#;
        assert_eq!(partition_key(Some(e), &order(), "x"), "Email:a@b");
        let e = r#"{"identityMap": {"AAID": [{"id": "9"}], "ZZ": [{"id": "1"}]}, "other": [1, {"a": null}]}"#;
        assert_eq!(partition_key(Some(e), &order(), "x"), "AAID:9");
        assert_eq!(
            partition_key(Some(r#"{"_id": "e1"}"#), &order(), "x"),
            "_id:e1"
        );
        assert_eq!(partition_key(Some("{}"), &order(), "x"), "x");
        assert_eq!(partition_key(None, &order(), "x"), "x");
        assert_eq!(
            partition_key(Some(r#"{"identityMap": 5, "_id": "e"}"#), &order(), "x"),
            "x"
        );
        assert_eq!(
            partition_key(Some(r#"{"_id": "a\"b"}"#), &order(), "x"),
            "_id:a\"b"
        );
    }
}
