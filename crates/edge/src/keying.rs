//! The partition key of a raw event, so one profile's events share a partition: the primary
//! identity when the event carries an identity map, else the first identity, else the event's
//! own `_id`, else its transaction id (stable across the message's own retries within a
//! request, which is all that ordering needs when there is no identity).

use serde_json::Value;

/// `entity` is an XDM entity (`body.xdmEntity`) or a plain record.
pub fn partition_key(entity: Option<&Value>, fallback: &str) -> String {
    let Some(entity) = entity else {
        return fallback.to_string();
    };
    if let Some(map) = entity.get("identityMap").and_then(Value::as_object) {
        let mut first = None;
        for (namespace, ids) in map {
            for id in ids.as_array().into_iter().flatten() {
                let Some(value) = id.get("id").and_then(Value::as_str) else {
                    continue;
                };
                if id.get("primary").and_then(Value::as_bool) == Some(true) {
                    return format!("{namespace}:{value}");
                }
                first.get_or_insert_with(|| format!("{namespace}:{value}"));
            }
        }
        if let Some(first) = first {
            return first;
        }
    }
    match entity.get("_id") {
        Some(Value::String(id)) => format!("_id:{id}"),
        _ => fallback.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn primary_identity_wins() {
        let e = json!({"_id": "e1", "identityMap": {
            "ECID": [{"id": "123"}],
            "Email": [{"id": "a@example.com", "primary": true}]
        }});
        assert_eq!(partition_key(Some(&e), "x"), "Email:a@example.com");
    }

    #[test]
    fn first_identity_then_id_then_fallback() {
        let e = json!({"identityMap": {"ECID": [{"id": "123"}]}});
        assert_eq!(partition_key(Some(&e), "x"), "ECID:123");
        assert_eq!(partition_key(Some(&json!({"_id": "e1"})), "x"), "_id:e1");
        assert_eq!(partition_key(Some(&json!({})), "x"), "x");
        assert_eq!(partition_key(None, "x"), "x");
    }
}
