//! A segment definition as the API takes it (the request body) and shows it (seed 003's
//! shape), and what its PQL expression compiles to: streaming or batch, why, and the other
//! definitions it names with `inSegment`.

use std::collections::{HashMap, HashSet};

use cdp_catalog::SegmentDefinition;
use cdp_pql::ast::{Expr, ExprKind, Span};
use cdp_pql::{Classification, Diagnostic, Evaluation, PqlError, SegmentInfo};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::error::SegmentError;
use super::limits::{MAX_EXPRESSION_BYTES, MAX_NAME_CHARS, MAX_STREAMING_PER_SANDBOX};
use super::schemas::{OrgSchemas, PROFILE_CLASS};
use crate::http::{Tenant, DEFAULT_SANDBOX};

/// `expression.type`: the only language.
pub const PQL_TYPE: &str = "PQL";
/// `expression.format`: the only format.
pub const PQL_FORMAT: &str = "pql/text";

// ---------------------------------------------------------------------------------------------
// The response shape.

/// A segment definition as the API shows it (seed 003).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionView {
    pub id: String,
    pub schema: SchemaName,
    pub ims_org_id: String,
    pub sandbox: SandboxView,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub expression: Expression,
    pub evaluation_info: EvaluationInfo,
    /// Unix milliseconds.
    pub creation_time: i64,
    /// Unix milliseconds of the last change (as the seed shows it, the same as `updateTime`).
    pub update_epoch: i64,
    pub update_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxView {
    /// Sandboxes have no ids here: always empty, as the seed's list shows it.
    pub sandbox_id: String,
    pub sandbox_name: String,
    /// `production` for `prod`, `development` for any other sandbox.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Whether this is the org's default sandbox (`prod`).
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expression {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub format: &'static str,
    pub value: String,
}

/// `evaluationInfo`: decided by the classifier, whatever the request said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluationInfo {
    pub batch: Enabled,
    pub continuous: Continuous,
    pub synchronous: Enabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Continuous {
    pub enabled: bool,
    /// The streaming query type, or why the definition is batch.
    pub reason: String,
}

impl EvaluationInfo {
    pub fn of(streaming: bool, classification: &str) -> Self {
        Self {
            batch: Enabled {
                enabled: !streaming,
            },
            continuous: Continuous {
                enabled: streaming,
                reason: classification.to_string(),
            },
            synchronous: Enabled { enabled: false },
        }
    }
}

impl DefinitionView {
    pub fn of(d: &SegmentDefinition) -> Self {
        let prod = d.sandbox == DEFAULT_SANDBOX;
        Self {
            id: d.id.clone(),
            schema: SchemaName {
                name: d.schema_name.clone(),
            },
            ims_org_id: d.org_id.clone(),
            sandbox: SandboxView {
                sandbox_id: String::new(),
                sandbox_name: d.sandbox.clone(),
                kind: if prod { "production" } else { "development" },
                default: prod,
            },
            name: d.name.clone(),
            description: d.description.clone(),
            expression: Expression {
                kind: PQL_TYPE,
                format: PQL_FORMAT,
                value: d.expression.clone(),
            },
            evaluation_info: EvaluationInfo::of(d.streaming, &d.classification),
            creation_time: d.creation_time,
            update_epoch: d.update_time,
            update_time: d.update_time,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The request body.

/// A POST or PATCH body. POST needs `name`, `schema` and `expression`; PATCH takes any of
/// `name`, `description` and `expression`. `evaluationInfo` is accepted and ignored (the
/// classifier decides), and so are the read-only fields of a GET answer, so one can be sent
/// back; `id` and `imsOrgId` must then match.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefinitionBody {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schema: Option<SchemaName>,
    #[serde(default)]
    pub expression: Option<ExpressionBody>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub ims_org_id: Option<String>,
    #[serde(default, rename = "evaluationInfo")]
    _evaluation_info: Option<IgnoredAny>,
    #[serde(default, rename = "sandbox")]
    _sandbox: Option<IgnoredAny>,
    #[serde(default, rename = "creationTime")]
    _creation_time: Option<IgnoredAny>,
    #[serde(default, rename = "updateEpoch")]
    _update_epoch: Option<IgnoredAny>,
    #[serde(default, rename = "updateTime")]
    _update_time: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpressionBody {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// What a write asks for, checked for shape (the expression is not compiled yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub name: String,
    pub description: Option<String>,
    pub expression: String,
    /// Whether the expression is new (a PATCH without one keeps the stored classification
    /// unless something it names changed).
    pub expression_changed: bool,
}

fn expression(body: ExpressionBody) -> Result<String, SegmentError> {
    match body.kind.as_deref() {
        Some(PQL_TYPE) => {}
        Some(other) => {
            return Err(SegmentError::bad_request(format!(
                "expression.type must be {PQL_TYPE} (got {other:?})"
            )))
        }
        None => {
            return Err(SegmentError::bad_request(format!(
                "expression.type is required ({PQL_TYPE})"
            )))
        }
    }
    match body.format.as_deref() {
        Some(PQL_FORMAT) => {}
        Some(other) => {
            return Err(SegmentError::bad_request(format!(
                "expression.format must be {PQL_FORMAT} (got {other:?})"
            )))
        }
        None => {
            return Err(SegmentError::bad_request(format!(
                "expression.format is required ({PQL_FORMAT})"
            )))
        }
    }
    let value = body.value.unwrap_or_default();
    if value.trim().is_empty() {
        return Err(SegmentError::bad_request(
            "expression.value must hold the PQL text of the definition",
        ));
    }
    if value.len() > MAX_EXPRESSION_BYTES {
        return Err(SegmentError::bad_request(format!(
            "expression.value is {} bytes; the limit is {MAX_EXPRESSION_BYTES}",
            value.len()
        )));
    }
    Ok(value)
}

/// The definition a create (`base` none) or a PATCH (`base` the stored one) asks for.
pub fn resolve(
    body: DefinitionBody,
    base: Option<&SegmentDefinition>,
    tenant: &Tenant,
) -> Result<Draft, SegmentError> {
    match (&body.id, base) {
        (Some(_), None) => {
            return Err(SegmentError::bad_request(
                "id is assigned by the server: leave it out when creating a segment definition",
            ))
        }
        (Some(id), Some(b)) if *id != b.id => {
            return Err(SegmentError::bad_request(format!(
                "the body's id {id} is not the definition's id {}",
                b.id
            )))
        }
        _ => {}
    }
    if let Some(org) = body.ims_org_id.as_ref().filter(|o| **o != tenant.org) {
        return Err(SegmentError::bad_request(format!(
            "imsOrgId {org} is not the org of the x-gw-ims-org-id header ({})",
            tenant.org
        )));
    }
    match &body.schema {
        Some(s) if s.name != PROFILE_CLASS => {
            return Err(SegmentError::bad_request(format!(
                "schema.name must be {PROFILE_CLASS} (got {:?}): segments are of profiles",
                s.name
            )))
        }
        None if base.is_none() => {
            return Err(SegmentError::bad_request(format!(
                "schema is required: {{\"name\": \"{PROFILE_CLASS}\"}}"
            )))
        }
        _ => {}
    }
    let name = match body.name {
        Some(n) if n.trim().is_empty() => {
            return Err(SegmentError::bad_request("name must not be empty"))
        }
        Some(n) if n.chars().count() > MAX_NAME_CHARS => {
            return Err(SegmentError::bad_request(format!(
                "name is longer than {MAX_NAME_CHARS} characters"
            )))
        }
        Some(n) => n,
        None => match base {
            Some(b) => b.name.clone(),
            None => return Err(SegmentError::bad_request("name is required")),
        },
    };
    let description = match body.description {
        // An empty description removes it.
        Some(d) if d.is_empty() => None,
        Some(d) => Some(d),
        None => base.and_then(|b| b.description.clone()),
    };
    let (expression, expression_changed) = match (body.expression, base) {
        (Some(e), _) => (expression(e)?, true),
        (None, Some(b)) => (b.expression.clone(), false),
        (None, None) => {
            return Err(SegmentError::bad_request(format!(
                "expression is required: {{\"type\": \"{PQL_TYPE}\", \"format\": \"{PQL_FORMAT}\", \"value\": \"<PQL>\"}}"
            )))
        }
    };
    Ok(Draft {
        name,
        description,
        expression,
        expression_changed,
    })
}

// ---------------------------------------------------------------------------------------------
// Compilation.

/// What an expression compiled to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub streaming: bool,
    /// The streaming query type, or why it is batch (what `continuous.reason` shows).
    pub classification: String,
    pub profile_only: bool,
    /// The ids `inSegment` names, in order of appearance, without repeats.
    pub references: Vec<String>,
}

/// The text stored and shown for a classification: the streaming query type
/// (`QueryType::describe`), or every reason it is batch.
pub fn classification_text(c: &Classification) -> (bool, String) {
    match (c.evaluation, c.query_type) {
        (Evaluation::Streaming, Some(t)) => (true, t.describe().to_string()),
        _ if c.reasons.is_empty() => (false, "batch".to_string()),
        _ => (false, c.reasons.join("; ")),
    }
}

/// Every `inSegment("<id>")` of an expression, with where it is written.
pub fn in_segments(e: &Expr, out: &mut Vec<(String, Span)>) {
    match &e.kind {
        ExprKind::And(a, b) | ExprKind::Or(a, b) => {
            in_segments(a, out);
            in_segments(b, out);
        }
        ExprKind::Not(a) => in_segments(a, out),
        ExprKind::InSegment(id) => out.push((id.clone(), e.span)),
        ExprKind::Any { cond, .. } => in_segments(cond, out),
        ExprKind::Aggregate {
            filter: Some(f), ..
        } => in_segments(f, out),
        ExprKind::Chain { steps, .. } => {
            for s in steps {
                in_segments(&s.cond, out);
            }
        }
        _ => {}
    }
}

/// The ids an expression names with `inSegment` (none when it does not parse).
pub fn references_of(source: &str) -> Vec<String> {
    let Ok(query) = cdp_pql::parse(source) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    in_segments(&query.cond, &mut found);
    let mut seen = HashSet::new();
    found
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// parse → check → classify → compile `source` against the org's schemas and the sandbox's
/// other definitions (`infos`, by id). An `inSegment` of an id not in `infos` is an error at
/// its place, like a checker error; a definition cannot name itself (`own_id`).
pub fn compile(
    source: &str,
    schemas: &OrgSchemas,
    infos: &HashMap<String, SegmentInfo>,
    own_id: Option<&str>,
) -> Result<Compiled, SegmentError> {
    let query = cdp_pql::parse(source).map_err(|e| pql_error(source, &e, &[]))?;
    let mut named = Vec::new();
    in_segments(&query.cond, &mut named);
    let unknown: Vec<Diagnostic> = named
        .iter()
        .filter(|(id, _)| Some(id.as_str()) == own_id || !infos.contains_key(id))
        .map(|(id, span)| {
            let message = if Some(id.as_str()) == own_id {
                format!("inSegment(\"{id}\") names this definition itself")
            } else {
                format!("inSegment names no segment definition of this sandbox: \"{id}\"")
            };
            Diagnostic::new(message, *span)
        })
        .collect();
    let compiled = cdp_pql::compile(source, &schemas.as_pql(), infos)
        .map_err(|e| pql_error(source, &e, &unknown))?;
    if !unknown.is_empty() {
        let all: Vec<&Diagnostic> = unknown.iter().collect();
        return Err(SegmentError::pql(source, &all));
    }
    let (streaming, classification) = classification_text(&compiled.classification);
    let mut seen = HashSet::new();
    Ok(Compiled {
        streaming,
        classification,
        profile_only: compiled.classification.profile_only,
        references: named
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| seen.insert(id.clone()))
            .collect(),
    })
}

/// The library's diagnostics and ours, in source order.
fn pql_error(source: &str, e: &PqlError, ours: &[Diagnostic]) -> SegmentError {
    let mut all: Vec<&Diagnostic> = e.diagnostics();
    if matches!(e, PqlError::Check(_)) {
        all.extend(ours);
    }
    all.sort_by_key(|d| (d.span.line, d.span.col));
    SegmentError::pql(source, &all)
}

/// What `inSegment` of each definition tells the classifier.
pub fn segment_infos<'a>(
    definitions: impl IntoIterator<Item = &'a SegmentDefinition>,
) -> HashMap<String, SegmentInfo> {
    definitions
        .into_iter()
        .map(|d| {
            (
                d.id.clone(),
                SegmentInfo {
                    profile_only: d.profile_only,
                },
            )
        })
        .collect()
}

/// A new streaming definition (or one turning streaming) is refused when the sandbox's other
/// definitions hold [`MAX_STREAMING_PER_SANDBOX`] streaming ones already.
pub fn check_streaming_limit(
    siblings: &[&SegmentDefinition],
    own: Option<&SegmentDefinition>,
    streaming: bool,
    sandbox: &str,
) -> Result<(), SegmentError> {
    if !streaming || own.is_some_and(|d| d.streaming) {
        return Ok(());
    }
    let others = siblings
        .iter()
        .filter(|d| d.streaming && own.is_none_or(|o| o.id != d.id))
        .count();
    if others >= MAX_STREAMING_PER_SANDBOX {
        return Err(SegmentError::TooManyStreaming {
            sandbox: sandbox.to_string(),
        });
    }
    Ok(())
}

/// Refuses a write of `id` naming `references` when one of them reaches `id` back through the
/// other definitions' `inSegment`s (`refs`: id → the ids it names).
pub fn check_no_cycle(
    id: &str,
    references: &[String],
    refs: &HashMap<String, Vec<String>>,
) -> Result<(), SegmentError> {
    // Depth-first, remembering the way, visiting each definition once.
    let mut visited: HashSet<&str> = HashSet::new();
    let mut stack: Vec<(Vec<&str>, &str)> =
        references.iter().map(|r| (vec![id], r.as_str())).collect();
    while let Some((way, at)) = stack.pop() {
        if at == id {
            let mut path: Vec<String> = way.iter().map(|s| s.to_string()).collect();
            path.push(id.to_string());
            return Err(SegmentError::Cycle {
                id: id.to_string(),
                path,
            });
        }
        if !visited.insert(at) {
            continue;
        }
        for next in refs.get(at).into_iter().flatten() {
            let mut w = way.clone();
            w.push(at);
            stack.push((w, next.as_str()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_pql::{FieldType, Schema};
    use serde_json::json;

    fn tenant() -> Tenant {
        Tenant {
            org: "acme".into(),
            sandbox: "prod".into(),
        }
    }

    fn body(v: serde_json::Value) -> DefinitionBody {
        serde_json::from_value(v).unwrap()
    }

    fn schemas() -> OrgSchemas {
        OrgSchemas {
            profile: Some(Schema::from_paths([
                ("person.birthYear", FieldType::Number),
                ("person.birthDate", FieldType::Date),
                ("homeAddress.countryCode", FieldType::String),
            ])),
            event: Some(Schema::from_paths([
                ("eventType", FieldType::String),
                ("commerce.order.priceTotal", FieldType::Number),
            ])),
        }
    }

    fn stored(id: &str, profile_only: bool) -> SegmentDefinition {
        SegmentDefinition {
            id: id.into(),
            name: id.into(),
            description: None,
            org_id: "acme".into(),
            sandbox: "prod".into(),
            schema_name: PROFILE_CLASS.into(),
            expression: "person.birthYear < 1970".into(),
            streaming: true,
            classification: "profile only".into(),
            profile_only,
            creation_time: 1,
            update_time: 2,
        }
    }

    fn compiled(source: &str) -> Compiled {
        let infos = segment_infos([&stored("po", true), &stored("other", false)]);
        compile(source, &schemas(), &infos, None).unwrap()
    }

    #[test]
    fn classification_maps_to_evaluation_info() {
        let cases = [
            (
                r#"xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 3 hours before now)"#,
                true,
                "single event",
            ),
            (
                "select var1 from xEvent where var1.eventType = \"web.webpagedetails.pageViews\"",
                true,
                "single event",
            ),
            ("person.birthYear < 1970", true, "profile only"),
            (
                r#"inSegment("po") and xEvent.any(eventType = "checkout" and timestamp occurs < 1 hours before now)"#,
                true,
                "single event",
            ),
            (
                r#"xEvent[eventType = "commerce.purchases" and timestamp occurs < 24 hours before now].count() > 2"#,
                true,
                "multiple events in strict order",
            ),
            (
                "person.birthDate occurs today ignoring year",
                false,
                "ignor",
            ),
            (
                r#"xProduct.any(eventType = "x") and person.birthYear < 1970"#,
                false,
                "xProduct",
            ),
            (
                r#"xEvent.any(eventType = "a" and timestamp occurs < 48 hours before now)"#,
                false,
                "48 hours",
            ),
            (
                r#"inSegment("other") and xEvent.any(eventType = "a" and timestamp occurs < 1 hours before now)"#,
                false,
                "inSegment",
            ),
        ];
        for (source, streaming, reason) in cases {
            let c = compiled(source);
            assert_eq!(c.streaming, streaming, "{source}: {c:?}");
            assert!(
                c.classification.contains(reason),
                "{source}: {:?} lacks {reason:?}",
                c.classification
            );
            let info =
                serde_json::to_value(EvaluationInfo::of(c.streaming, &c.classification)).unwrap();
            assert_eq!(
                info,
                json!({
                    "batch": {"enabled": !streaming},
                    "continuous": {"enabled": streaming, "reason": c.classification},
                    "synchronous": {"enabled": false},
                })
            );
        }
        assert!(compiled("person.birthYear < 1970").profile_only);
        assert!(!compiled(r#"xEvent.any(eventType = "a")"#).profile_only);
        assert_eq!(
            compiled(r#"inSegment("po") or inSegment("other") or inSegment("po")"#).references,
            ["po", "other"]
        );
    }

    #[test]
    fn expression_errors_say_where() {
        let infos = segment_infos([&stored("po", true)]);
        let err = |source: &str| {
            let e = compile(source, &schemas(), &infos, Some("self")).unwrap_err();
            let SegmentError::Pql { rendered, errors } = e else {
                panic!("{source}: a PQL error, got {e:?}");
            };
            (rendered, errors)
        };
        let (rendered, errors) = err("person.birthYear <\n  and true");
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].line, errors[0].column), (2, 3));
        assert!(
            rendered.starts_with("error at line 2, column 3:"),
            "{rendered}"
        );

        let (rendered, errors) = err("person.birthYer < 1970");
        assert!(rendered.contains("person.birthYer"), "{rendered}");
        assert_eq!((errors[0].line, errors[0].column), (1, 1));

        // Unknown inSegment ids and the checker's errors together, in source order.
        let (rendered, errors) = err(r#"inSegment("nope") and persn.x = 1 and inSegment("self")"#);
        assert_eq!(errors.len(), 3, "{rendered}");
        assert!(errors[0].message.contains("\"nope\""), "{errors:?}");
        assert!(errors[1].message.contains("persn.x"), "{errors:?}");
        assert!(errors[2].message.contains("itself"), "{errors:?}");
        assert_eq!(errors[2].column, 39);

        // An unknown id alone.
        let (_, errors) = err(r#"inSegment("nope")"#);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn bodies_are_checked() {
        let full = json!({"name": "n", "schema": {"name": PROFILE_CLASS},
            "expression": {"type": "PQL", "format": "pql/text", "value": "person.birthYear < 1970"},
            "evaluationInfo": {"continuous": {"enabled": true}}});
        let d = resolve(body(full.clone()), None, &tenant()).unwrap();
        assert_eq!(d.expression, "person.birthYear < 1970");
        assert!(d.expression_changed);
        for (field, value, says) in [
            ("name", json!(" "), "name must not be empty"),
            (
                "schema",
                json!({"name": "_xdm.context.experienceevent"}),
                "schema.name",
            ),
            (
                "expression",
                json!({"type": "SQL", "format": "pql/text", "value": "x"}),
                "expression.type must be PQL",
            ),
            (
                "expression",
                json!({"type": "PQL", "format": "pql/json", "value": "x"}),
                "expression.format must be pql/text",
            ),
            (
                "expression",
                json!({"type": "PQL", "format": "pql/text", "value": ""}),
                "expression.value",
            ),
            ("id", json!("x"), "assigned by the server"),
            ("imsOrgId", json!("globex"), "imsOrgId"),
        ] {
            let mut v = full.clone();
            v[field] = value;
            let e = resolve(body(v), None, &tenant()).unwrap_err();
            assert!(matches!(e, SegmentError::BadRequest(_)), "{e:?}");
            assert!(e.to_string().contains(says), "{field}: {e}");
        }
        for missing in ["name", "schema", "expression"] {
            let mut v = full.clone();
            v.as_object_mut().unwrap().remove(missing);
            let e = resolve(body(v), None, &tenant()).unwrap_err();
            assert!(e.to_string().contains(missing), "{e}");
        }
        assert!(serde_json::from_value::<DefinitionBody>(json!({"nme": "x"})).is_err());

        // PATCH keeps what it does not name; an empty description removes it.
        let mut base = stored("a", true);
        base.description = Some("d".into());
        let p = resolve(body(json!({"name": "renamed"})), Some(&base), &tenant()).unwrap();
        assert_eq!(
            (
                p.name.as_str(),
                p.description.as_deref(),
                p.expression_changed
            ),
            ("renamed", Some("d"), false)
        );
        assert_eq!(p.expression, base.expression);
        let p = resolve(body(json!({"description": ""})), Some(&base), &tenant()).unwrap();
        assert_eq!(p.description, None);
        // A GET answer can be sent back.
        let echo = serde_json::to_value(DefinitionView::of(&base)).unwrap();
        assert!(resolve(body(echo), Some(&base), &tenant()).is_ok());
    }

    #[test]
    fn the_view_has_the_seeds_shape() {
        let mut d = stored("a", true);
        d.sandbox = "dev".into();
        d.description = Some("People".into());
        let v = serde_json::to_value(DefinitionView::of(&d)).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "a", "schema": {"name": PROFILE_CLASS}, "imsOrgId": "acme",
                "sandbox": {"sandboxId": "", "sandboxName": "dev", "type": "development", "default": false},
                "name": "a", "description": "People",
                "expression": {"type": "PQL", "format": "pql/text", "value": "person.birthYear < 1970"},
                "evaluationInfo": {"batch": {"enabled": false},
                    "continuous": {"enabled": true, "reason": "profile only"},
                    "synchronous": {"enabled": false}},
                "creationTime": 1, "updateEpoch": 2, "updateTime": 2
            })
        );
    }

    #[test]
    fn the_streaming_limit_counts_the_others() {
        let many: Vec<SegmentDefinition> = (0..MAX_STREAMING_PER_SANDBOX)
            .map(|i| stored(&i.to_string(), true))
            .collect();
        let refs: Vec<&SegmentDefinition> = many.iter().collect();
        let e = check_streaming_limit(&refs, None, true, "prod").unwrap_err();
        assert!(matches!(e, SegmentError::TooManyStreaming { .. }));
        assert!(check_streaming_limit(&refs, None, false, "prod").is_ok());
        // A streaming definition that stays streaming is not a new one.
        assert!(check_streaming_limit(&refs, Some(refs[3]), true, "prod").is_ok());
        let mut batch = stored("b", true);
        batch.streaming = false;
        assert!(check_streaming_limit(&refs, Some(&batch), true, "prod").is_err());
        assert!(check_streaming_limit(&refs[1..], None, true, "prod").is_ok());
    }

    #[test]
    fn cycles_are_found() {
        let refs: HashMap<String, Vec<String>> = [
            ("b".to_string(), vec!["c".to_string()]),
            ("c".to_string(), vec!["a".to_string()]),
            ("d".to_string(), vec![]),
        ]
        .into_iter()
        .collect();
        let e = check_no_cycle("a", &["d".into(), "b".into()], &refs).unwrap_err();
        assert!(e.to_string().contains("a -> b -> c -> a"), "{e}");
        assert!(check_no_cycle("a", &["d".into()], &refs).is_ok());
        assert!(check_no_cycle("x", &["b".into()], &refs).is_ok());
        assert_eq!(
            references_of(r#"inSegment("b") and not inSegment("c")"#),
            ["b", "c"]
        );
        assert!(references_of("((").is_empty());
    }
}
