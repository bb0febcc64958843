//! Activation: which profile changes a destination flow exports, and the exported document
//! (seed 004's format). Decided here, in the profile engine, because it is the one place that
//! holds a profile's attributes, identities and memberships together at the moment one of them
//! changes; the export is written in the same transaction as the membership change, so a flow
//! sees every change exactly once. Delivery (at least once, per flow) is the sinks stage's.
//!
//! A flow exports a profile when one of its mapped segments changed status, or when the
//! profile's identities or one of the flow's mapped attributes changed while the profile is a
//! member of one of its segments.

use std::collections::{BTreeMap, BTreeSet};

use cdp_catalog::{CatalogState, CatalogView};
use cdp_contract::records::{Identity, MembershipChange, Status};
use chrono::{TimeZone, Utc};
use serde_json::{Map, Value};

pub use cdp_contract::flow_run::FLOW_HEADER;

/// What a flow selects: its segments and the profile attributes (dotted paths) it exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub flow_id: String,
    pub segments: BTreeSet<String>,
    pub paths: Vec<String>,
    /// When the flow last changed (epoch ms): members that qualified since were exported when
    /// they entered, so a first export is only for those that qualified before.
    pub updated_at: i64,
}

/// The enabled flows of a sandbox that map at least one segment.
pub fn activations_in(state: &CatalogState, org: &str, sandbox: &str) -> Vec<Activation> {
    let mut found: Vec<Activation> = state
        .flows
        .values()
        .filter(|f| f.org_id == org && f.sandbox == sandbox && f.state == "enabled")
        .map(|f| Activation {
            flow_id: f.id.clone(),
            segments: f.segment_ids().into_iter().collect(),
            paths: f.profile_paths(),
            updated_at: f.updated_at,
        })
        .filter(|a| !a.segments.is_empty())
        .collect();
    found.sort_by(|a, b| a.flow_id.cmp(&b.flow_id));
    found
}

/// What every enabled flow selects now, flow id → its segments: kept per partition so that a
/// flow's new segments can be exported for the members already held ([`initial`]).
pub fn selections(catalog: &CatalogView) -> BTreeMap<String, BTreeSet<String>> {
    let state = catalog.read();
    state
        .flows
        .values()
        .filter(|f| f.state == "enabled")
        .map(|f| (f.id.clone(), f.segment_ids().into_iter().collect()))
        .collect()
}

/// The segments each flow selects now but did not in `before`.
pub fn added(
    before: &BTreeMap<String, BTreeSet<String>>,
    now: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    now.iter()
        .filter_map(|(flow, segments)| {
            let old = before.get(flow);
            let new: BTreeSet<String> = segments
                .iter()
                .filter(|s| !old.is_some_and(|o| o.contains(*s)))
                .cloned()
                .collect();
            (!new.is_empty()).then(|| (flow.clone(), new))
        })
        .collect()
}

/// The first export of a profile that is a member of segments a flow has just selected (a flow
/// activated after its segments have members): AEP's first full export, statuses `existing`.
pub fn initial(
    flow: &Activation,
    profile: Snapshot<'_>,
    members: &BTreeMap<String, i64>,
) -> Export {
    Export {
        flow_id: flow.flow_id.clone(),
        document: document(flow, profile, members, &[]),
    }
}

/// A profile as activation sees it, before or after a change.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    pub identities: &'a [Identity],
    pub attributes: &'a Value,
}

/// One document to deliver to one flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub flow_id: String,
    pub document: Value,
}

/// The exports a change causes. `members`: the profile's memberships after the change, segment
/// → last qualification time (epoch ms); `changes`: the membership changes of this change.
pub fn exports(
    flows: &[Activation],
    before: Option<Snapshot<'_>>,
    after: Snapshot<'_>,
    members: &BTreeMap<String, i64>,
    changes: &[MembershipChange],
) -> Vec<Export> {
    let mut out = Vec::new();
    for flow in flows {
        let changed_segment = changes
            .iter()
            .any(|c| flow.segments.contains(&c.segment_id));
        let member = members.keys().any(|s| flow.segments.contains(s));
        let profile_changed = before.is_some_and(|b| {
            !same_identities(b.identities, after.identities)
                || flow
                    .paths
                    .iter()
                    .any(|p| lookup(b.attributes, p) != lookup(after.attributes, p))
        });
        if !(changed_segment || (member && profile_changed)) {
            continue;
        }
        out.push(Export {
            flow_id: flow.flow_id.clone(),
            document: document(flow, after, members, changes),
        });
    }
    out
}

fn same_identities(a: &[Identity], b: &[Identity]) -> bool {
    let set = |v: &[Identity]| -> BTreeSet<(String, String)> {
        v.iter().map(|i| (i.ns.clone(), i.id.clone())).collect()
    };
    a.len() == b.len() && set(a) == set(b)
}

/// Seed 004's export: the selected attributes, the flow's segment memberships, the identity map.
fn document(
    flow: &Activation,
    profile: Snapshot<'_>,
    members: &BTreeMap<String, i64>,
    changes: &[MembershipChange],
) -> Value {
    let mut root = Map::new();
    for path in &flow.paths {
        if let Some(value) = lookup(profile.attributes, path) {
            insert(&mut root, path, value.clone());
        }
    }
    let mut ups = Map::new();
    for (segment, since) in members {
        if flow.segments.contains(segment) {
            ups.insert(segment.clone(), entry("existing", *since));
        }
    }
    // This change's own statuses win over "existing".
    for c in changes
        .iter()
        .filter(|c| flow.segments.contains(&c.segment_id))
    {
        let status = match c.status {
            Status::Realized => "realized",
            Status::Existing => "existing",
            Status::Exited => "exited",
        };
        ups.insert(
            c.segment_id.clone(),
            entry(status, c.last_qualification_time),
        );
    }
    let mut segment_membership = Map::new();
    segment_membership.insert("ups".into(), Value::Object(ups));
    root.insert(
        "segmentMembership".into(),
        Value::Object(segment_membership),
    );
    root.insert("identityMap".into(), identity_map(profile.identities));
    Value::Object(root)
}

fn entry(status: &str, since_ms: i64) -> Value {
    let mut e = Map::new();
    e.insert(
        "lastQualificationTime".into(),
        Value::String(rfc3339(since_ms)),
    );
    e.insert("status".into(), Value::String(status.into()));
    Value::Object(e)
}

/// Seconds precision, `Z`, as in the seed (`2020-03-03T21:24:39Z`).
fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `{ "<namespace, lower case>": [{"id": …}, …] }`, as the seed's example.
fn identity_map(identities: &[Identity]) -> Value {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for i in identities {
        let mut id = Map::new();
        id.insert("id".into(), Value::String(i.id.clone()));
        map.entry(i.ns.to_lowercase())
            .or_default()
            .push(Value::Object(id));
    }
    Value::Object(
        map.into_iter()
            .map(|(ns, ids)| (ns, Value::Array(ids)))
            .collect(),
    )
}

/// The value at a dotted path (`person.email`) of the attributes.
fn lookup<'a>(attributes: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(attributes, |v, part| v.get(part))
        .filter(|v| !v.is_null())
}

fn insert(root: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else {
        return;
    };
    let mut at = root;
    for part in parts {
        let next = at
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(map) = next else {
            return;
        };
        at = map;
    }
    at.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_contract::records::Trigger;
    use serde_json::json;

    fn flow() -> Activation {
        Activation {
            flow_id: "f1".into(),
            segments: ["s1".to_string(), "s2".to_string()].into(),
            paths: vec!["person.email".into()],
            updated_at: 0,
        }
    }

    fn ids(v: &[(&str, &str)]) -> Vec<Identity> {
        v.iter()
            .map(|(ns, id)| Identity {
                ns: ns.to_string(),
                id: id.to_string(),
            })
            .collect()
    }

    fn change(segment: &str, status: Status) -> MembershipChange {
        MembershipChange {
            profile_id: "p".into(),
            org_id: "o".into(),
            sandbox: "s".into(),
            identities: vec![],
            segment_id: segment.into(),
            status,
            last_qualification_time: 1_583_270_679_000,
            time: 0,
            trigger: Trigger::Event,
            event_id: None,
        }
    }

    #[test]
    fn a_mapped_segment_change_exports_the_seed_document() {
        let identities = ids(&[("ECID", "145"), ("ECID", "664"), ("Email", "a@b.c")]);
        let attributes = json!({"person": {"email": "a@b.c", "lastName": "X"}});
        let members = BTreeMap::from([("s2".to_string(), 1_583_364_653_000)]);
        let out = exports(
            &[flow()],
            None,
            Snapshot {
                identities: &identities,
                attributes: &attributes,
            },
            &members,
            &[change("s1", Status::Exited)],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].document,
            json!({
                "person": {"email": "a@b.c"},
                "segmentMembership": {"ups": {
                    "s1": {"lastQualificationTime": "2020-03-03T21:24:39Z", "status": "exited"},
                    "s2": {"lastQualificationTime": "2020-03-04T23:30:53Z", "status": "existing"}
                }},
                "identityMap": {
                    "ecid": [{"id": "145"}, {"id": "664"}],
                    "email": [{"id": "a@b.c"}]
                }
            })
        );
    }

    #[test]
    fn unmapped_changes_and_non_members_export_nothing() {
        let identities = ids(&[("ECID", "1")]);
        let before_attrs = json!({"person": {"email": "old"}});
        let after_attrs = json!({"person": {"email": "new"}});
        let before = Snapshot {
            identities: &identities,
            attributes: &before_attrs,
        };
        let after = Snapshot {
            identities: &identities,
            attributes: &after_attrs,
        };
        // Another segment changed, and the profile is in none of the flow's.
        let none = exports(
            &[flow()],
            Some(before),
            after,
            &BTreeMap::new(),
            &[change("other", Status::Realized)],
        );
        assert!(none.is_empty());
        // A member whose mapped attribute changed is exported.
        let members = BTreeMap::from([("s1".to_string(), 0)]);
        let one = exports(&[flow()], Some(before), after, &members, &[]);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].document["person"]["email"], "new");
        // An attribute the flow does not map changes nothing.
        let unmapped = json!({"person": {"email": "old", "lastName": "Y"}});
        let same = exports(
            &[flow()],
            Some(before),
            Snapshot {
                identities: &identities,
                attributes: &unmapped,
            },
            &members,
            &[],
        );
        assert!(same.is_empty());
    }

    #[test]
    fn newly_selected_segments_are_found_per_flow() {
        let set = |v: &[&str]| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<String>>()
        };
        let before = BTreeMap::from([("f1".to_string(), set(&["s1"]))]);
        let now = BTreeMap::from([
            ("f1".to_string(), set(&["s1", "s2"])),
            ("f2".to_string(), set(&["s1"])),
        ]);
        let added = added(&before, &now);
        assert_eq!(added["f1"], set(&["s2"]));
        assert_eq!(added["f2"], set(&["s1"]));
        assert!(super::added(&now, &now).is_empty());
    }

    #[test]
    fn an_identity_change_of_a_member_is_exported() {
        let old = ids(&[("ECID", "1")]);
        let new = ids(&[("ECID", "1"), ("Email", "a@b.c")]);
        let attrs = json!({});
        let members = BTreeMap::from([("s1".to_string(), 0)]);
        let out = exports(
            &[flow()],
            Some(Snapshot {
                identities: &old,
                attributes: &attrs,
            }),
            Snapshot {
                identities: &new,
                attributes: &attrs,
            },
            &members,
            &[],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].document["identityMap"]["email"][0]["id"], "a@b.c");
        assert!(out[0].document.get("person").is_none());
    }
}
