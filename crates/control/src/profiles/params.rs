//! The query parameters of the Profile and Identity APIs, parsed into requests. Every rejection
//! names the parameter it is about.

use cdp_contract::records::Identity;
use cdp_http::Problem;

/// An event's place in a profile's history: `(timestampMs, itemId)`.
pub type EventKey = (i64, String);

/// `schema.name` of a profile lookup.
pub const PROFILE_SCHEMA: &str = "_xdm.context.profile";
/// `schema.name` of an event lookup (with `relatedSchema.name` = [`PROFILE_SCHEMA`]).
pub const EVENT_SCHEMA: &str = "_xdm.context.experienceevent";
/// Events per page when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1_000;

/// A query parameter that is missing or not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("the query parameter {param} is required{hint}")]
    Missing {
        param: &'static str,
        hint: &'static str,
    },
    #[error("the query parameter {param} {detail}")]
    Invalid { param: &'static str, detail: String },
}

impl ParamError {
    /// The parameter the error is about.
    pub fn param(&self) -> &'static str {
        match self {
            ParamError::Missing { param, .. } | ParamError::Invalid { param, .. } => param,
        }
    }

    fn invalid(param: &'static str, detail: impl Into<String>) -> Self {
        ParamError::Invalid {
            param,
            detail: detail.into(),
        }
    }
}

impl From<ParamError> for Problem {
    fn from(e: ParamError) -> Self {
        Problem::bad_request(e.to_string())
    }
}

/// The query string as `(name, value)` pairs, decoded.
pub type Query = [(String, String)];

/// The first non-empty value of `name`.
pub fn get<'a>(query: &'a Query, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

fn required<'a>(
    query: &'a Query,
    param: &'static str,
    hint: &'static str,
) -> Result<&'a str, ParamError> {
    get(query, param).ok_or(ParamError::Missing { param, hint })
}

/// `GET /access/entities`: a profile, or a profile's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntitiesRequest {
    Profile(ProfileRequest),
    Events(EventsRequest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRequest {
    pub identity: Identity,
    pub merge_policy_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsRequest {
    pub identity: Identity,
    pub limit: usize,
    /// Where the page starts: below this event.
    pub start: Option<EventKey>,
}

impl EntitiesRequest {
    pub fn parse(query: &Query) -> Result<Self, ParamError> {
        let schema = required(
            query,
            "schema.name",
            " (_xdm.context.profile or _xdm.context.experienceevent)",
        )?;
        match schema {
            PROFILE_SCHEMA => {
                let id = required(query, "entityId", " (the identity's value)")?;
                let ns = required(query, "entityIdNS", " (the identity's namespace code)")?;
                Ok(EntitiesRequest::Profile(ProfileRequest {
                    identity: Identity::new(ns, id),
                    merge_policy_id: get(query, "mergePolicyId").map(str::to_string),
                }))
            }
            EVENT_SCHEMA => {
                let related = required(query, "relatedSchema.name", " (_xdm.context.profile)")?;
                if related != PROFILE_SCHEMA {
                    return Err(ParamError::invalid(
                        "relatedSchema.name",
                        format!("must be {PROFILE_SCHEMA} (got {related:?})"),
                    ));
                }
                let id = required(query, "relatedEntityId", " (the identity's value)")?;
                let ns = required(
                    query,
                    "relatedEntityIdNS",
                    " (the identity's namespace code)",
                )?;
                Ok(EntitiesRequest::Events(EventsRequest {
                    identity: Identity::new(ns, id),
                    limit: parse_limit(get(query, "limit"))?,
                    start: get(query, "start").map(decode_cursor).transpose()?,
                }))
            }
            other => Err(ParamError::invalid(
                "schema.name",
                format!("must be {PROFILE_SCHEMA} or {EVENT_SCHEMA} (got {other:?})"),
            )),
        }
    }
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn parse_limit(raw: Option<&str>) -> Result<usize, ParamError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ParamError::invalid(
            "limit",
            format!("must be a whole number from 1 to {MAX_LIMIT} (got {raw:?})"),
        )),
    }
}

/// The cursor of the next page: opaque to clients (hex of `<timestampMs>:<itemId>`).
pub fn encode_cursor(key: &EventKey) -> String {
    hex::encode(format!("{}:{}", key.0, key.1))
}

pub fn decode_cursor(raw: &str) -> Result<EventKey, ParamError> {
    let bad = || {
        ParamError::invalid(
            "start",
            "is not a cursor this API gave out (use _page.next of the previous page)",
        )
    };
    let bytes = hex::decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (ts, item) = text.split_once(':').ok_or_else(bad)?;
    let ts = ts.parse::<i64>().map_err(|_| bad())?;
    Ok((ts, item.to_string()))
}

/// The identity of `/identity/cluster/*`: `xid=<ns>:<id>`, or `namespace=<ns>&id=<id>`.
pub fn parse_identity(query: &Query) -> Result<Identity, ParamError> {
    if let Some(xid) = get(query, "xid") {
        return Identity::parse_xid(xid).ok_or_else(|| {
            ParamError::invalid(
                "xid",
                format!("must be <namespace>:<id>, e.g. CRMID:123 (got {xid:?})"),
            )
        });
    }
    match (get(query, "namespace"), get(query, "id")) {
        (Some(ns), Some(id)) => Ok(Identity::new(ns, id)),
        (Some(_), None) => Err(ParamError::Missing {
            param: "id",
            hint: " with namespace",
        }),
        (None, Some(_)) => Err(ParamError::Missing {
            param: "namespace",
            hint: " with id",
        }),
        (None, None) => Err(ParamError::Missing {
            param: "xid",
            hint: " (<namespace>:<id>), or namespace and id",
        }),
    }
}

/// `s` percent-encoded for a query string (everything but RFC 3986's unreserved characters).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `query` with `start` set to `cursor`, as a query string.
pub fn with_start(query: &Query, cursor: &str) -> String {
    query
        .iter()
        .filter(|(k, _)| k != "start")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(std::iter::once(("start", cursor)))
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_profile_lookup_needs_the_schema_and_the_identity() {
        let ok = EntitiesRequest::parse(&q(&[
            ("schema.name", PROFILE_SCHEMA),
            ("entityId", "c1"),
            ("entityIdNS", "CRMID"),
            ("mergePolicyId", "mp"),
        ]))
        .unwrap();
        assert_eq!(
            ok,
            EntitiesRequest::Profile(ProfileRequest {
                identity: Identity::new("CRMID", "c1"),
                merge_policy_id: Some("mp".into()),
            })
        );
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("entityId", "c1"), ("entityIdNS", "CRMID")],
                "schema.name",
            ),
            (&[("schema.name", "_xdm.context.segment")], "schema.name"),
            (
                &[("schema.name", PROFILE_SCHEMA), ("entityIdNS", "CRMID")],
                "entityId",
            ),
            (
                &[("schema.name", PROFILE_SCHEMA), ("entityId", "c1")],
                "entityIdNS",
            ),
            (
                &[
                    ("schema.name", PROFILE_SCHEMA),
                    ("entityId", ""),
                    ("entityIdNS", "CRMID"),
                ],
                "entityId",
            ),
        ];
        for (pairs, param) in cases {
            let e = EntitiesRequest::parse(&q(pairs)).unwrap_err();
            assert_eq!(e.param(), *param, "{pairs:?}");
            assert!(e.to_string().contains(param), "{e}");
        }
    }

    #[test]
    fn an_event_lookup_pages_with_a_limit_and_a_cursor() {
        let base = [
            ("schema.name", EVENT_SCHEMA),
            ("relatedSchema.name", PROFILE_SCHEMA),
            ("relatedEntityId", "e1"),
            ("relatedEntityIdNS", "ECID"),
        ];
        let EntitiesRequest::Events(r) = EntitiesRequest::parse(&q(&base)).unwrap() else {
            panic!("an event lookup");
        };
        assert_eq!(
            (r.identity, r.limit, r.start),
            (Identity::new("ECID", "e1"), DEFAULT_LIMIT, None)
        );

        let cursor = encode_cursor(&(1_700_000_000_000, "evt:1:2".into()));
        let mut pairs = base.to_vec();
        pairs.push(("limit", "1000"));
        pairs.push(("start", &cursor));
        let EntitiesRequest::Events(r) = EntitiesRequest::parse(&q(&pairs)).unwrap() else {
            panic!("an event lookup");
        };
        assert_eq!(r.limit, 1000);
        assert_eq!(r.start, Some((1_700_000_000_000, "evt:1:2".to_string())));

        for (param, value) in [
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "ten"),
            ("limit", "-1"),
            ("start", "zz"),
            ("start", &hex::encode("no-colon")),
            ("start", &hex::encode("x:item")),
            ("relatedSchema.name", "_xdm.context.segment"),
        ] {
            let mut pairs: Vec<(&str, &str)> =
                base.iter().filter(|(k, _)| *k != param).copied().collect();
            pairs.push((param, value));
            let e = EntitiesRequest::parse(&q(&pairs)).unwrap_err();
            assert_eq!(e.param(), param, "{param}={value}: {e}");
        }
        for missing in ["relatedSchema.name", "relatedEntityId", "relatedEntityIdNS"] {
            let pairs: Vec<(&str, &str)> = base
                .iter()
                .filter(|(k, _)| *k != missing)
                .copied()
                .collect();
            assert_eq!(
                EntitiesRequest::parse(&q(&pairs)).unwrap_err().param(),
                missing
            );
        }
    }

    #[test]
    fn an_identity_is_an_xid_or_a_namespace_and_an_id() {
        assert_eq!(
            parse_identity(&q(&[("xid", "Email:a:b@x.io")])).unwrap(),
            Identity::new("Email", "a:b@x.io")
        );
        assert_eq!(
            parse_identity(&q(&[("namespace", "CRMID"), ("id", "c1")])).unwrap(),
            Identity::new("CRMID", "c1")
        );
        for (pairs, param) in [
            (q(&[("xid", "CRMID")]), "xid"),
            (q(&[("xid", ":c1")]), "xid"),
            (q(&[("xid", "CRMID:")]), "xid"),
            (q(&[]), "xid"),
            (q(&[("namespace", "CRMID")]), "id"),
            (q(&[("id", "c1")]), "namespace"),
        ] {
            assert_eq!(parse_identity(&pairs).unwrap_err().param(), param);
        }
    }

    #[test]
    fn the_next_link_keeps_the_query_and_replaces_start() {
        let query = q(&[
            ("schema.name", EVENT_SCHEMA),
            ("relatedEntityId", "a b&c"),
            ("start", "old"),
        ]);
        assert_eq!(
            with_start(&query, "6869"),
            "schema.name=_xdm.context.experienceevent&relatedEntityId=a%20b%26c&start=6869"
        );
    }
}
