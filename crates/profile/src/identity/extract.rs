//! Which identities of a record's `identityMap` may be linked, after AEP's guardrails: at most
//! 20 per record; no blocked or over-long values; an `ECID` is 38 digits; the namespace must
//! exist in the sandbox. Every identity left out is kept with its reason (metrics and the
//! profile's audit show them), none is silently dropped.

use cdp_contract::records::{Identity, NamespaceTraits, Refused, RefusedReason};
use serde_json::Value;

/// At most this many identities of one record are linked.
pub const MAX_PER_RECORD: usize = 20;
/// Longer values are not linked.
pub const MAX_VALUE_LEN: usize = 1024;
/// Refused values are shown at most this long.
const SHOWN_LEN: usize = 64;

/// The identities of one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Linkable identities with their namespace traits, the primary one first, then in map
    /// order; no duplicates.
    pub identities: Vec<(Identity, NamespaceTraits)>,
    pub refused: Vec<Refused>,
}

/// Reads `entity.identityMap`; `traits` says what a namespace code means in the record's
/// sandbox (`None`: unknown).
pub fn extract(entity: &Value, traits: impl Fn(&str) -> Option<NamespaceTraits>) -> Extracted {
    let mut out = Extracted::default();
    let Some(map) = entity.get("identityMap").and_then(Value::as_object) else {
        return out;
    };
    let mut primary = Vec::new();
    let mut others = Vec::new();
    for (ns, values) in map {
        let Some(values) = values.as_array() else {
            continue;
        };
        for entry in values {
            let raw = entry.get("id");
            let Some(id) = raw.and_then(Value::as_str) else {
                out.refused.push(Refused {
                    ns: ns.clone(),
                    id: raw.map(Value::to_string).map(shown).unwrap_or_default(),
                    reason: RefusedReason::NotAString,
                });
                continue;
            };
            if let Some(reason) = check(ns, id, &traits) {
                out.refused.push(Refused {
                    ns: ns.clone(),
                    id: shown(id.to_string()),
                    reason,
                });
                continue;
            }
            let Some(t) = traits(ns) else {
                continue;
            };
            let identity = (Identity::new(ns.clone(), id), t);
            if entry.get("primary").and_then(Value::as_bool) == Some(true) {
                primary.push(identity);
            } else {
                others.push(identity);
            }
        }
    }
    for candidate in primary.into_iter().chain(others) {
        if out.identities.iter().any(|(i, _)| *i == candidate.0) {
            continue;
        }
        if out.identities.len() == MAX_PER_RECORD {
            out.refused.push(Refused {
                ns: candidate.0.ns.clone(),
                id: shown(candidate.0.id.clone()),
                reason: RefusedReason::OverRecordLimit,
            });
        } else {
            out.identities.push(candidate);
        }
    }
    out
}

fn check(
    ns: &str,
    id: &str,
    traits: &impl Fn(&str) -> Option<NamespaceTraits>,
) -> Option<RefusedReason> {
    let blocked = ["", "null", "anonymous", "invalid"];
    if blocked.iter().any(|b| id.trim().eq_ignore_ascii_case(b)) {
        return Some(RefusedReason::BlockedValue);
    }
    if id.chars().count() > MAX_VALUE_LEN {
        return Some(RefusedReason::TooLong);
    }
    if ns == "ECID" && !(id.len() == 38 && id.bytes().all(|b| b.is_ascii_digit())) {
        return Some(RefusedReason::MalformedEcid);
    }
    if traits(ns).is_none() {
        return Some(RefusedReason::UnknownNamespace);
    }
    None
}

fn shown(mut s: String) -> String {
    if let Some((at, _)) = s.char_indices().nth(SHOWN_LEN) {
        s.truncate(at);
    }
    s
}

#[cfg(test)]
mod tests {
    use cdp_catalog::IdentityType;
    use serde_json::json;

    use super::*;

    fn known(ns: &str) -> Option<NamespaceTraits> {
        let id_type = match ns {
            "ECID" => IdentityType::Cookie,
            "CRMID" => IdentityType::CrossDevice,
            "Email" => IdentityType::Email,
            "Tenant" => IdentityType::Partner,
            _ => return None,
        };
        Some(NamespaceTraits {
            id_type,
            unique: (ns == "CRMID").then_some(1),
        })
    }

    pub const ECID: &str = "12345678901234567890123456789012345678";

    #[test]
    fn primary_first_then_map_order_without_duplicates() {
        let e = json!({"identityMap": {
            "ECID": [{"id": ECID}],
            "Email": [{"id": "a@x.io", "primary": true}, {"id": "a@x.io"}],
            "CRMID": [{"id": "c1"}]
        }});
        let out = extract(&e, known);
        let ids: Vec<String> = out.identities.iter().map(|(i, _)| i.to_string()).collect();
        assert_eq!(
            ids,
            vec![
                "Email:a@x.io".to_string(),
                "CRMID:c1".into(),
                format!("ECID:{ECID}")
            ]
        );
        assert!(out.refused.is_empty());
    }

    #[test]
    fn blocked_long_malformed_unknown_and_non_string_values_are_refused_with_reasons() {
        let long = "x".repeat(MAX_VALUE_LEN + 1);
        let e = json!({"identityMap": {
            "ECID": [{"id": "123"}, {"id": "anonymous"}],
            "Email": [{"id": ""}, {"id": "NULL"}, {"id": " Invalid "}, {"id": long}],
            "CRMID": [{"id": 42}],
            "Nope": [{"id": "v"}]
        }});
        let out = extract(&e, known);
        assert!(out.identities.is_empty());
        let reasons: Vec<RefusedReason> = out.refused.iter().map(|r| r.reason).collect();
        use RefusedReason::*;
        assert_eq!(
            reasons,
            vec![
                NotAString,
                MalformedEcid,
                BlockedValue,
                BlockedValue,
                BlockedValue,
                BlockedValue,
                TooLong,
                UnknownNamespace
            ]
        );
        assert_eq!(out.refused[6].id.len(), 64, "refused values are shown cut");
    }

    #[test]
    fn only_twenty_identities_of_a_record_are_linked() {
        let emails: Vec<serde_json::Value> = (0..25)
            .map(|i| json!({"id": format!("u{i:02}@x.io")}))
            .collect();
        let out = extract(&json!({"identityMap": {"Email": emails}}), known);
        assert_eq!(out.identities.len(), MAX_PER_RECORD);
        assert_eq!(out.refused.len(), 5);
        assert!(out
            .refused
            .iter()
            .all(|r| r.reason == RefusedReason::OverRecordLimit));
        assert_eq!(out.refused[0].id, "u20@x.io");
    }

    #[test]
    fn no_identity_map_means_no_identities() {
        assert_eq!(extract(&json!({"_id": "e"}), known), Extracted::default());
    }
}
