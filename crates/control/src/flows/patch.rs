//! `PATCH /flows/{id}`: a JSON Patch (RFC 6902) on the flow as `GET /flows/{id}` shows it,
//! under `If-Match`, and the checks of what it leaves.
//!
//! - [`IfMatch`]: the header's entity tags (quoted or not, `*`, a list); absent is a 428, not
//!   the current etag a 412;
//! - [`apply`]: every operation may test anything but change only `/name`, `/description`,
//!   `/state` (`enabled` or `disabled`) and `/transformations`; operations apply in order, all or nothing (a failing one is a 400
//!   naming its index, op and path); at most [`MAX_OPERATIONS`] of them, and no flow larger
//!   than [`MAX_FLOW_BYTES`] after any (a `copy` of `/transformations` into itself doubles the
//!   flow: a few dozen would exhaust memory);
//! - [`check_transformations`]: every segment selector is a `PLATFORM_SEGMENT` whose `value.id`
//!   is a segment definition of the sandbox, every profile selector a `JSON_PATH` with
//!   `operator: EXISTS` and a non-empty `path` (which the flow handler then checks against
//!   the org's profile schema).

use axum::http::HeaderMap;
use cdp_catalog::flows::{EXISTS, GENERAL_TRANSFORM, JSON_PATH, PLATFORM_SEGMENT};
use json_patch::PatchOperation;
use serde_json::Value;

use super::error::Versioned;
use super::FlowError;

/// The top-level members of a flow a patch may change.
pub const WRITABLE: &[&str] = &["name", "description", "state", "transformations"];

/// Most operations in one patch.
pub const MAX_OPERATIONS: usize = 100;

/// Largest flow, as JSON, that a patch may make at any step.
pub const MAX_FLOW_BYTES: usize = 1_000_000;

/// What a patch of one kind of record may do.
pub struct Rules {
    /// "flow", "connection": in messages.
    pub what: &'static str,
    /// The top-level members it may change.
    pub writable: &'static [&'static str],
    /// A top-level member holding secrets: only `add`, `replace` and `remove` may name a path in
    /// it. A `test` there would tell a secret by its answer, a `copy` or `move` from it would
    /// show it elsewhere.
    pub sealed: Option<&'static str>,
}

pub const FLOW_RULES: Rules = Rules {
    what: "flow",
    writable: WRITABLE,
    sealed: None,
};

/// A base connection: its name, description and `auth.params` (sealed again after the patch).
pub const CONNECTION_RULES: Rules = Rules {
    what: "connection",
    writable: &["name", "description", "auth"],
    sealed: Some("auth"),
};

/// `If-Match`: `*` or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Tags(Vec<String>),
}

impl IfMatch {
    /// The request's `If-Match` (every such header, comma-separated lists), `None` when absent.
    /// Tags are taken with or without their quotes; weak tags (`W/"…"`) are kept with their
    /// prefix so they never match (If-Match compares strongly).
    pub fn from_headers(headers: &HeaderMap) -> Option<IfMatch> {
        let mut tags = Vec::new();
        let mut any = false;
        for value in headers.get_all(axum::http::header::IF_MATCH) {
            let Ok(text) = value.to_str() else {
                continue;
            };
            for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if tag == "*" {
                    any = true;
                } else if tag.starts_with("W/") {
                    tags.push(tag.to_string());
                } else {
                    tags.push(tag.trim_matches('"').to_string());
                }
            }
        }
        if any {
            Some(IfMatch::Any)
        } else if tags.is_empty() {
            None
        } else {
            Some(IfMatch::Tags(tags))
        }
    }

    pub fn matches(&self, current: &str) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => tags.iter().any(|t| t == current),
        }
    }

    /// The request's `If-Match`, which a change of `of` `id` needs (428 without it).
    pub fn required(headers: &HeaderMap, of: Versioned, id: &str) -> Result<IfMatch, FlowError> {
        IfMatch::from_headers(headers).ok_or_else(|| FlowError::PreconditionRequired {
            of,
            id: id.to_string(),
        })
    }

    /// 412 unless it names `etag`, the current one of `of` `id`.
    pub fn check(&self, etag: &str, of: Versioned, id: &str) -> Result<(), FlowError> {
        if self.matches(etag) {
            Ok(())
        } else {
            Err(FlowError::PreconditionFailed {
                of,
                id: id.to_string(),
            })
        }
    }
}

/// A JSON Pointer in messages: the whole document's (empty) one quoted.
fn shown(pointer: &str) -> &str {
    if pointer.is_empty() {
        "\"\" (the whole flow)"
    } else {
        pointer
    }
}

/// The op's name as the patch says it.
fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// The top-level member a JSON Pointer lands in (`""` for the whole document).
fn top_member(pointer: &str) -> String {
    pointer
        .strip_prefix('/')
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .unwrap_or_default()
        .replace("~1", "/")
        .replace("~0", "~")
}

/// The operations of a JSON Patch body, each checked to be an operation (a 400 names the index
/// of the first that is not).
pub fn parse(body: &Value) -> Result<Vec<PatchOperation>, FlowError> {
    let ops = body.as_array().ok_or_else(|| {
        FlowError::bad_request(
            "the body must be a JSON Patch array (RFC 6902), e.g. [{\"op\": \"add\", \"path\": \"/transformations/0/params/segmentSelectors/selectors/-\", \"value\": {…}}]",
        )
    })?;
    if ops.len() > MAX_OPERATIONS {
        return Err(FlowError::bad_request(format!(
            "a patch has at most {MAX_OPERATIONS} operations; this one has {}: send it in parts",
            ops.len()
        )));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            serde_json::from_value::<PatchOperation>(op.clone()).map_err(|e| {
                FlowError::bad_request(format!(
                    "operation {i} is not a JSON Patch operation (op add, remove, replace, move, copy or test, with path, and value or from as the op needs): {e}"
                ))
            })
        })
        .collect()
}

/// `ops` applied, in order and all or nothing, to `doc` (the record as the patch sees it),
/// under `rules`.
pub fn apply(doc: &mut Value, ops: &[PatchOperation], rules: &Rules) -> Result<(), FlowError> {
    for (i, op) in ops.iter().enumerate() {
        let path = op.path().to_string();
        let refuse = |pointer: &str, role: &str| {
            FlowError::bad_request(format!(
                "operation {i} ({} {}): {role}{} cannot be changed; a patch changes {}",
                op_name(op),
                shown(&path),
                shown(pointer),
                rules
                    .writable
                    .iter()
                    .map(|w| format!("/{w}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        let writable = |pointer: &str| rules.writable.contains(&top_member(pointer).as_str());
        if let Some(sealed) = rules.sealed {
            let from = match op {
                PatchOperation::Move(m) => Some(m.from.to_string()),
                PatchOperation::Copy(c) => Some(c.from.to_string()),
                _ => None,
            };
            let touches = |p: &str| top_member(p) == sealed;
            let writes_only = matches!(
                op,
                PatchOperation::Add(_) | PatchOperation::Replace(_) | PatchOperation::Remove(_)
            );
            if (touches(&path) && !writes_only) || from.as_deref().is_some_and(touches) {
                return Err(FlowError::bad_request(format!(
                    "operation {i} ({} {}): /{sealed} holds secrets: it takes add, replace and remove only",
                    op_name(op),
                    shown(&path)
                )));
            }
        }
        match op {
            PatchOperation::Test(_) => {}
            PatchOperation::Move(m) => {
                let from = m.from.to_string();
                if !writable(&from) {
                    return Err(refuse(&from, "from "));
                }
                if !writable(&path) {
                    return Err(refuse(&path, ""));
                }
            }
            _ if !writable(&path) => return Err(refuse(&path, "")),
            _ => {}
        }
    }
    // One operation at a time on a copy, so that the size is checked after each and the flow
    // changes only if all apply.
    let mut work = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let path = op.path().to_string();
        json_patch::patch(&mut work, std::slice::from_ref(op)).map_err(|e| {
            FlowError::bad_request(format!(
                "operation {i} ({} {}) does not apply: {}",
                op_name(op),
                shown(&e.path.to_string()),
                e.kind
            ))
        })?;
        let size = serde_json::to_vec(&work).map_or(usize::MAX, |v| v.len());
        if size > MAX_FLOW_BYTES {
            return Err(FlowError::bad_request(format!(
                "operation {i} ({} {}) makes the {what} {size} bytes as JSON; a {what} is at most {MAX_FLOW_BYTES}",
                op_name(op),
                shown(&path),
                what = rules.what,
            )));
        }
    }
    *doc = work;
    Ok(())
}

/// What a selector's place is called in messages.
fn at(i: usize, group: &str, j: usize) -> String {
    format!("transformations/{i}/params/{group}/selectors/{j}")
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The selectors of `group` in transformation `i` (absent: none).
fn selectors<'a>(params: &'a Value, i: usize, group: &str) -> Result<&'a [Value], FlowError> {
    match params.get(group) {
        None | Some(Value::Null) => Ok(&[]),
        Some(g) => g
            .get("selectors")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                FlowError::bad_request(format!(
                    "transformations/{i}/params/{group} must be {{\"selectors\": [...]}}"
                ))
            }),
    }
}

/// Checks a flow's `transformations`: an array of `GeneralTransform`s whose selectors are
/// well formed and name segments for which `segment_known` holds (those of the sandbox).
/// `sandbox` names the sandbox in messages.
pub fn check_transformations(
    transformations: &Value,
    segment_known: impl Fn(&str) -> bool,
    sandbox: &str,
) -> Result<(), FlowError> {
    let items = transformations
        .as_array()
        .ok_or_else(|| FlowError::bad_request("transformations must be an array"))?;
    for (i, t) in items.iter().enumerate() {
        let name = t.get("name").and_then(Value::as_str);
        if name != Some(GENERAL_TRANSFORM) {
            return Err(FlowError::bad_request(format!(
                "transformations/{i}/name must be {GENERAL_TRANSFORM:?}"
            )));
        }
        let params = t.get("params").filter(|p| p.is_object()).ok_or_else(|| {
            FlowError::bad_request(format!(
                "transformations/{i}/params must be an object with segmentSelectors and profileSelectors"
            ))
        })?;
        for (j, s) in selectors(params, i, "segmentSelectors")?.iter().enumerate() {
            let place = at(i, "segmentSelectors", j);
            if str_at(s, "/type") != Some(PLATFORM_SEGMENT) {
                return Err(FlowError::bad_request(format!(
                    "{place}: type must be {PLATFORM_SEGMENT}"
                )));
            }
            let id = str_at(s, "/value/id")
                .filter(|id| !id.trim().is_empty())
                .ok_or_else(|| {
                    FlowError::bad_request(format!(
                        "{place}: value.id must name a segment definition"
                    ))
                })?;
            for field in ["name", "description"] {
                if s.pointer(&format!("/value/{field}"))
                    .is_some_and(|v| !v.is_string() && !v.is_null())
                {
                    return Err(FlowError::bad_request(format!(
                        "{place}: value.{field} must be a string"
                    )));
                }
            }
            if !segment_known(id) {
                return Err(FlowError::bad_request(format!(
                    "{place}: segment {id} is not a segment definition of sandbox {sandbox} (GET /segment/definitions lists them)"
                )));
            }
        }
        for (j, s) in selectors(params, i, "profileSelectors")?.iter().enumerate() {
            let place = at(i, "profileSelectors", j);
            if str_at(s, "/type") != Some(JSON_PATH) {
                return Err(FlowError::bad_request(format!(
                    "{place}: type must be {JSON_PATH}"
                )));
            }
            if str_at(s, "/value/operator") != Some(EXISTS) {
                return Err(FlowError::bad_request(format!(
                    "{place}: value.operator must be {EXISTS}"
                )));
            }
            if str_at(s, "/value/path").is_none_or(|p| p.trim().is_empty()) {
                return Err(FlowError::bad_request(format!(
                    "{place}: value.path must be a non-empty profile attribute path, e.g. personalEmail.address"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use cdp_catalog::Flow;
    use serde_json::json;

    fn if_match(values: &[&str]) -> Option<IfMatch> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("if-match", HeaderValue::from_str(v).unwrap());
        }
        IfMatch::from_headers(&h)
    }

    #[test]
    fn if_match_takes_tags_with_or_without_quotes() {
        assert_eq!(if_match(&[]), None);
        assert!(if_match(&["\"abc\""]).unwrap().matches("abc"));
        assert!(if_match(&["abc"]).unwrap().matches("abc"));
        assert!(if_match(&["\"x\", \"abc\""]).unwrap().matches("abc"));
        assert!(if_match(&["\"x\"", "abc"]).unwrap().matches("abc"));
        assert!(if_match(&["*"]).unwrap().matches("anything"));
        assert!(!if_match(&["\"abd\""]).unwrap().matches("abc"));
        assert!(!if_match(&["W/\"abc\""]).unwrap().matches("abc"));
    }

    fn doc() -> Value {
        json!({
            "id": "f",
            "name": "flow",
            "flowSpec": {"id": "spec", "version": "1.0"},
            "transformations": Flow::initial_transformations(),
            "etag": "e",
        })
    }

    fn add_segment(id: &str) -> Value {
        json!({"op": "add", "path": "/transformations/0/params/segmentSelectors/selectors/-",
               "value": {"type": "PLATFORM_SEGMENT", "value": {"name": "n", "description": "", "id": id}}})
    }

    #[test]
    fn patches_change_the_writable_members_only() {
        let mut d = doc();
        let ops = parse(&json!([add_segment("s1"),
            {"op": "add", "path": "/transformations/0/params/profileSelectors/selectors/-",
             "value": {"type": "JSON_PATH", "value": {"operator": "EXISTS", "path": "person.lastName"}}},
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "test", "path": "/id", "value": "f"}]))
        .unwrap();
        apply(&mut d, &ops, &FLOW_RULES).unwrap();
        assert_eq!(d["name"], "renamed");
        assert_eq!(
            d["transformations"][0]["params"]["segmentSelectors"]["selectors"][0]["value"]["id"],
            "s1"
        );
        for (body, needle) in [
            (
                json!([add_segment("s1"), {"op": "replace", "path": "/etag", "value": "x"}]),
                "operation 1 (replace /etag): /etag cannot be changed",
            ),
            (
                json!([{"op": "move", "from": "/flowSpec", "path": "/name"}]),
                "from /flowSpec cannot be changed",
            ),
            (
                json!([{"op": "remove", "path": ""}]),
                "operation 0 (remove \"\" (the whole flow))",
            ),
        ] {
            let e = apply(&mut doc(), &parse(&body).unwrap(), &FLOW_RULES).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn a_failing_operation_is_named_and_nothing_applies() {
        let mut d = doc();
        let ops = parse(&json!([
            add_segment("s1"),
            {"op": "add", "path": "/transformations/3/params/x", "value": 1}
        ]))
        .unwrap();
        let e = apply(&mut d, &ops, &FLOW_RULES).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert!(
            e.to_string()
                .contains("operation 1 (add /transformations/3/params/x) does not apply"),
            "{e}"
        );
        assert_eq!(d, doc(), "all or nothing");
        let e =
            parse(&json!([add_segment("a"), {"op": "frobnicate", "path": "/name"}])).unwrap_err();
        assert!(e.to_string().starts_with("operation 1 is not"), "{e}");
        assert!(parse(&json!({"op": "add"})).is_err());
    }

    #[test]
    fn patches_are_bounded_in_operations_and_in_the_size_they_make() {
        let replace = json!({"op": "replace", "path": "/name", "value": "n"});
        assert!(parse(&json!(vec![replace.clone(); MAX_OPERATIONS])).is_ok());
        let e = parse(&json!(vec![replace; MAX_OPERATIONS + 1])).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert!(e.to_string().contains("at most 100 operations"), "{e}");

        // Each copy doubles the flow; the operation that takes it past the bound is named, and
        // nothing applies.
        let mut d = doc();
        let grow = json!({"op": "copy", "from": "/transformations", "path": "/transformations/-"});
        let ops = parse(&json!(vec![grow; 60])).unwrap();
        let e = apply(&mut d, &ops, &FLOW_RULES).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        let text = e.to_string();
        assert!(
            text.contains("(copy /transformations/-) makes the flow")
                && text.contains("at most 1000000"),
            "{text}"
        );
        assert_eq!(d, doc(), "all or nothing");
    }

    #[test]
    fn transformations_are_checked() {
        let known = |id: &str| id == "s1";
        let check = |ops: Value| {
            let mut d = doc();
            apply(&mut d, &parse(&ops).unwrap(), &FLOW_RULES).unwrap();
            check_transformations(&d["transformations"], known, "prod")
        };
        check(json!([add_segment("s1")])).unwrap();
        let e = check(json!([add_segment("s1"), add_segment("nope")])).unwrap_err();
        assert!(
            e.to_string().contains(
                "transformations/0/params/segmentSelectors/selectors/1: segment nope is not a segment definition of sandbox prod"
            ),
            "{e}"
        );
        let profile = |value: Value| {
            json!([{"op": "add", "path": "/transformations/0/params/profileSelectors/selectors/-",
                    "value": value}])
        };
        for (value, needle) in [
            (
                json!({"type": "XPATH", "value": {"operator": "EXISTS", "path": "a"}}),
                "type must be JSON_PATH",
            ),
            (
                json!({"type": "JSON_PATH", "value": {"operator": "EQUALS", "path": "a"}}),
                "operator must be EXISTS",
            ),
            (
                json!({"type": "JSON_PATH", "value": {"operator": "EXISTS", "path": " "}}),
                "value.path must be",
            ),
            (
                json!({"type": "JSON_PATH", "value": {"operator": "EXISTS"}}),
                "value.path must be",
            ),
        ] {
            let e = check(profile(value)).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        let e =
            check(json!([{"op": "replace", "path": "/transformations", "value": {}}])).unwrap_err();
        assert!(e.to_string().contains("must be an array"), "{e}");
        let e = check(
            json!([{"op": "add", "path": "/transformations/0/params/segmentSelectors/selectors/-",
                              "value": {"type": "PLATFORM_SEGMENT", "value": {"name": "x"}}}]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("value.id must name"), "{e}");
        // Removing the transformation leaves a flow that selects nothing.
        check(json!([{"op": "remove", "path": "/transformations/0"}])).unwrap();
    }

    #[test]
    fn a_connections_secrets_are_written_never_read_by_a_patch() {
        let mut doc = json!({"name": "kinesis", "auth": {"specName": "x",
            "params": {"secretKey": "s3cr3t", "region": "eu-west-1"}}});
        let ok = parse(&json!([
            {"op": "replace", "path": "/auth/params/secretKey", "value": "n3w"},
            {"op": "test", "path": "/name", "value": "kinesis"}]))
        .unwrap();
        apply(&mut doc, &ok, &CONNECTION_RULES).unwrap();
        assert_eq!(doc["auth"]["params"]["secretKey"], "n3w");
        for oracle in [
            json!([{"op": "test", "path": "/auth/params/secretKey", "value": "n3w"}]),
            json!([{"op": "copy", "from": "/auth/params/secretKey", "path": "/name"}]),
            json!([{"op": "move", "from": "/auth/params/secretKey", "path": "/description"}]),
        ] {
            let e = apply(&mut doc, &parse(&oracle).unwrap(), &CONNECTION_RULES).unwrap_err();
            assert!(e.to_string().contains("holds secrets"), "{oracle}: {e}");
        }
        let e = apply(
            &mut doc,
            &parse(&json!([{"op": "replace", "path": "/connectionSpec", "value": {}}])).unwrap(),
            &CONNECTION_RULES,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/name, /description, /auth"), "{e}");
    }
}
