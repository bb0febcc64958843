//! The partition key of a raw event, so one profile's events share a partition: the primary
//! identity when the event carries an identity map, else the first identity (namespaces in
//! sorted order), else the event's own `_id`, else its transaction id.
//!
//! It reads only the fields it needs from the event's JSON text, without building a tree: this
//! runs for every accepted message.

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

/// `entity` is the JSON text of an XDM entity (`body.xdmEntity`) or of a plain record. A shape
/// this does not understand (an identity map of the wrong type) falls back to `fallback`.
pub fn partition_key(entity: Option<&str>, fallback: &str) -> String {
    let Some(view) = entity.and_then(|e| serde_json::from_str::<KeyView<'_>>(e).ok()) else {
        return fallback.to_string();
    };
    if let Some(map) = &view.identity_map {
        let mut first = None;
        for (namespace, ids) in map {
            for identity in ids {
                let Some(value) = &identity.id else { continue };
                if identity.primary == Some(true) {
                    return format!("{namespace}:{value}");
                }
                first.get_or_insert_with(|| format!("{namespace}:{value}"));
            }
        }
        if let Some(first) = first {
            return first;
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

    #[test]
    fn primary_identity_wins() {
        let e = r#"{"_id": "e1", "identityMap": {
            "ECID": [{"id": "123"}],
            "Email": [{"id": "a@example.com", "primary": true}]
        }}"#;
        assert_eq!(partition_key(Some(e), "x"), "Email:a@example.com");
    }

    #[test]
    fn first_identity_then_id_then_fallback() {
        let e = r#"{"identityMap": {"ECID": [{"id": "123"}]}, "other": [1, {"a": null}]}"#;
        assert_eq!(partition_key(Some(e), "x"), "ECID:123");
        assert_eq!(partition_key(Some(r#"{"_id": "e1"}"#), "x"), "_id:e1");
        assert_eq!(partition_key(Some("{}"), "x"), "x");
        assert_eq!(partition_key(None, "x"), "x");
        assert_eq!(
            partition_key(Some(r#"{"identityMap": 5, "_id": "e"}"#), "x"),
            "x"
        );
        assert_eq!(partition_key(Some(r#"{"_id": "a\"b"}"#), "x"), "_id:a\"b");
    }
}
