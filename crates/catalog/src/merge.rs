//! Merge policies: how a profile's fragments (one per dataset and identity) become its
//! attributes. Timestamp-ordered: per attribute, the fragment ingested last wins. Dataset
//! precedence: per attribute, the fragment of the highest-ranked dataset wins; datasets not
//! ranked come below every ranked one, in ingestion order. Objects merge attribute by
//! attribute; any other value (arrays included) is replaced whole.

use std::cmp::Ordering;

use cdp_contract::records::Fragment;
use serde_json::{Map, Value};

use crate::model::{AttributeMerge, AttributeMergeKind};

/// The default when a sandbox has no merge policy: timestamp-ordered.
pub fn default_policy() -> AttributeMerge {
    AttributeMerge {
        kind: AttributeMergeKind::TimestampOrdered,
        data: Vec::new(),
    }
}

/// The merged attributes of `fragments` under `policy`.
pub fn merge<'a>(
    fragments: impl IntoIterator<Item = &'a Fragment>,
    policy: &AttributeMerge,
) -> Value {
    let mut ordered: Vec<&Fragment> = fragments.into_iter().collect();
    // Weakest first: later fragments overwrite earlier ones.
    ordered.sort_by(|x, y| match policy.kind {
        AttributeMergeKind::TimestampOrdered => by_time(x, y),
        AttributeMergeKind::DataSetPrecedence => {
            let rank = |f: &Fragment| policy.data.iter().position(|d| *d == f.dataset_id);
            match (rank(x), rank(y)) {
                // A lower position is a higher precedence, so it comes later.
                (Some(a), Some(b)) => b.cmp(&a).then_with(|| by_time(x, y)),
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => by_time(x, y),
            }
        }
    });
    let mut merged = Map::new();
    for f in ordered {
        if let Value::Object(attributes) = &f.attributes {
            overlay(&mut merged, attributes);
        }
    }
    Value::Object(merged)
}

fn by_time(x: &Fragment, y: &Fragment) -> Ordering {
    (x.ingest_ms, x.seq, &x.dataset_id, &x.owner).cmp(&(
        y.ingest_ms,
        y.seq,
        &y.dataset_id,
        &y.owner,
    ))
}

fn overlay(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => overlay(existing, incoming),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cdp_contract::records::Identity;
    use serde_json::json;

    use super::*;

    fn fragment(dataset: &str, ingest_ms: i64, attributes: Value) -> Fragment {
        Fragment {
            dataset_id: dataset.into(),
            owner: Identity::new("CRMID", "c"),
            timestamp_ms: ingest_ms,
            ingest_ms,
            seq: ingest_ms as u64,
            attributes,
        }
    }

    #[test]
    fn timestamp_ordered_the_last_ingested_wins_per_attribute() {
        let crm = fragment(
            "crm",
            2,
            json!({"person": {"name": {"firstName": "Ann"}}, "loyalty": {"tier": "gold"}}),
        );
        let web = fragment(
            "web",
            1,
            json!({"person": {"name": {"firstName": "A.", "lastName": "Lee"}}, "tags": [1, 2]}),
        );
        let merged = merge([&crm, &web], &default_policy());
        assert_eq!(
            merged,
            json!({"person": {"name": {"firstName": "Ann", "lastName": "Lee"}}, "loyalty": {"tier": "gold"}, "tags": [1, 2]})
        );
    }

    #[test]
    fn dataset_precedence_the_ranked_dataset_wins_whatever_the_time() {
        let crm = fragment("crm", 1, json!({"email": "crm@x.io", "tags": ["a"]}));
        let web = fragment(
            "web",
            5,
            json!({"email": "web@x.io", "city": "Oslo", "tags": ["b", "c"]}),
        );
        let other = fragment("other", 9, json!({"email": "other@x.io", "zip": "0150"}));
        let policy = AttributeMerge {
            kind: AttributeMergeKind::DataSetPrecedence,
            data: vec!["crm".into(), "web".into()],
        };
        let merged = merge([&web, &other, &crm], &policy);
        assert_eq!(
            merged,
            json!({"email": "crm@x.io", "city": "Oslo", "zip": "0150", "tags": ["a"]})
        );
    }
}
