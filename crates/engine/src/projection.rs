//! Which fields of an event a profile keeps: the event fields the sandbox's definitions read
//! (streaming and batch, [`cdp_pql::Inputs::event_paths`]) plus the operator's keep-list
//! (`profile.keep_event_fields`; `"*"` keeps whole events). `_id`, `eventType` and the
//! timestamp are always kept, beside the fields. The whole event stays in the lake and on
//! `events.valid`, and goes to `profile.updates` as it arrived.
//!
//! A definition created later that reads a field nobody kept sees that field absent in the
//! events already held (as for an event that never had it); events that arrive afterwards
//! carry it. [`crate::backfill`] makes the history right: it reads the held events again from
//! `events.valid` and fills in the fields the sandbox now reads.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// The fields kept of a sandbox's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    /// Keep every field.
    pub all: bool,
    /// Dotted paths, split (`["commerce", "order", "priceTotal"]`).
    pub paths: BTreeSet<Vec<String>>,
}

impl Projection {
    /// `paths` read by definitions, and the keep-list (dotted paths; `*` for everything).
    pub fn new(paths: impl IntoIterator<Item = Vec<String>>, keep: &[String]) -> Self {
        let mut p = Projection {
            all: keep.iter().any(|k| k.trim() == "*"),
            paths: paths.into_iter().collect(),
        };
        for k in keep {
            let k = k.trim();
            if !k.is_empty() && k != "*" {
                p.paths.insert(k.split('.').map(String::from).collect());
            }
        }
        // `eventType` and `_id` are kept beside the fields.
        p.paths
            .retain(|path| !(path.len() == 1 && (path[0] == "eventType" || path[0] == "_id")));
        p
    }

    /// Whether `other` keeps a field this one does not.
    pub fn lacks_some_of(&self, other: &Projection) -> bool {
        !self.all && (other.all || !other.paths.is_subset(&self.paths))
    }

    /// The kept fields of an entity, as an object (empty when nothing is kept).
    pub fn project(&self, entity: &Value) -> Value {
        let Value::Object(source) = entity else {
            return Value::Object(Map::new());
        };
        if self.all {
            let mut m = source.clone();
            m.remove("_id");
            m.remove("eventType");
            return Value::Object(m);
        }
        let mut out = Map::new();
        for path in &self.paths {
            copy_path(source, path, &mut out);
        }
        Value::Object(out)
    }

    /// A stable fingerprint of the kept set (what a profile's events were projected with).
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.all.hash(&mut h);
        self.paths.hash(&mut h);
        h.finish()
    }
}

fn copy_path(source: &Map<String, Value>, path: &[String], out: &mut Map<String, Value>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(value) = source.get(first) else {
        return;
    };
    if rest.is_empty() {
        out.insert(first.clone(), value.clone());
        return;
    }
    let Value::Object(inner) = value else {
        return;
    };
    let slot = out
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(target) = slot {
        copy_path(inner, rest, target);
        if target.is_empty() {
            out.remove(first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(p: &[&str]) -> Vec<Vec<String>> {
        p.iter()
            .map(|p| p.split('.').map(String::from).collect())
            .collect()
    }

    #[test]
    fn only_the_read_and_kept_fields_stay() {
        let event = json!({"_id": "e1", "eventType": "buy", "timestamp": "2026-01-01T00:00:00Z",
                           "commerce": {"order": {"priceTotal": 9.5, "currency": "EUR"}},
                           "web": {"page": {"name": "home"}}, "device": "phone"});
        let p = Projection::new(
            paths(&["commerce.order.priceTotal", "eventType", "missing.field"]),
            &["device".to_string()],
        );
        assert_eq!(
            p.project(&event),
            json!({"commerce": {"order": {"priceTotal": 9.5}}, "device": "phone"})
        );
        let all = Projection::new(paths(&[]), &["*".to_string()]);
        assert_eq!(
            all.project(&event)["web"]["page"]["name"],
            json!("home"),
            "everything but _id and eventType"
        );
        assert!(all.project(&event).get("_id").is_none());
        assert!(p.lacks_some_of(&all));
        assert!(!all.lacks_some_of(&p));
        let more = Projection::new(paths(&["commerce.order.priceTotal", "web.page.name"]), &[]);
        assert!(p.lacks_some_of(&more));
        assert!(!more.lacks_some_of(&Projection::new(paths(&["web.page.name"]), &[])));
        // A path through a value that is not an object keeps nothing.
        let odd = Projection::new(paths(&["device.model"]), &[]);
        assert_eq!(odd.project(&event), json!({}));
    }
}
