//! The schemas a segment definition is checked against: the union of an org's profile-enabled
//! XDM schemas, one for profile attributes (class `_xdm.context.profile`) and one for events
//! (every other class).
//!
//! XDM schemas carry no org in the catalog; an org's schemas are those its datasets use. A
//! schema counts when a profile-enabled dataset of the org uses it and its latest version is
//! profile-enabled — the rule the profile stage applies to what it takes in (`intake.rs`), so
//! exactly the fields that can reach a profile can be segmented on.

use std::collections::BTreeMap;

use cdp_catalog::{CatalogState, XdmSchema};
use cdp_pql::{Schema, Schemas};
use serde_json::{json, Map, Value};

use super::error::SegmentError;

/// The class of profile-attribute schemas.
pub const PROFILE_CLASS: &str = "_xdm.context.profile";

/// The union schemas of one org. `None` when the org has no schema of that kind: the checker
/// then leaves paths of that entity unchecked.
#[derive(Debug, Clone, Default)]
pub struct OrgSchemas {
    pub profile: Option<Schema>,
    pub event: Option<Schema>,
}

impl OrgSchemas {
    /// The org's schemas from the catalog. A schema whose definition the checker cannot read
    /// is an error naming it (an unchecked entity would let every path through).
    pub fn of(catalog: &CatalogState, org: &str) -> Result<Self, SegmentError> {
        let used = org_schemas(catalog, org);
        for schema in used.values() {
            Schema::from_json_schema(&schema.definition).map_err(|source| {
                SegmentError::Schema {
                    schema: schema.id.clone(),
                    source,
                }
            })?;
        }
        let (profile, event): (Vec<&XdmSchema>, Vec<&XdmSchema>) =
            used.into_values().partition(|s| s.class == PROFILE_CLASS);
        Ok(Self {
            profile: union_schema(&profile)?,
            event: union_schema(&event)?,
        })
    }

    pub fn as_pql(&self) -> Schemas<'_> {
        Schemas {
            profile: self.profile.as_ref(),
            event: self.event.as_ref(),
        }
    }
}

/// The org's schemas that reach profiles, by id (so every schema counts once and a union is the
/// same whatever the map order).
fn org_schemas<'a>(catalog: &'a CatalogState, org: &str) -> BTreeMap<&'a str, &'a XdmSchema> {
    let mut used: BTreeMap<&str, &XdmSchema> = BTreeMap::new();
    for dataset in catalog.datasets.values() {
        if dataset.org_id != org || !dataset.profile_enabled {
            continue;
        }
        if let Some(schema) = catalog.latest_schema(&dataset.schema_id) {
            if schema.profile_enabled {
                used.insert(schema.id.as_str(), schema);
            }
        }
    }
    used
}

/// Whether some profile of `org` can have the attribute at dotted `path`: it is a field of one
/// of the org's profile-class schemas, or lies below an object that takes any property (JSON
/// Schema's default; composed XDM schemas close their root with `additionalProperties: false`).
/// `None` when the org has no profile-class schema: nothing to check against.
pub fn profile_can_have(catalog: &CatalogState, org: &str, path: &str) -> Option<bool> {
    let definitions: Vec<&Value> = org_schemas(catalog, org)
        .into_values()
        .filter(|s| s.class == PROFILE_CLASS)
        .map(|s| &s.definition)
        .collect();
    if definitions.is_empty() {
        return None;
    }
    Some(definitions.into_iter().any(|d| allows(d, path)))
}

fn allows(definition: &Value, path: &str) -> bool {
    let mut node = definition;
    for segment in path.split('.') {
        match node.get("properties").and_then(|p| p.get(segment)) {
            Some(child) => node = child,
            None => {
                let is_object = node.get("type").is_none_or(|t| t == "object");
                let closed = node.get("additionalProperties") == Some(&Value::Bool(false));
                return is_object && !closed && !segment.is_empty();
            }
        }
    }
    true
}

fn union_schema(schemas: &[&XdmSchema]) -> Result<Option<Schema>, SegmentError> {
    if schemas.is_empty() {
        return Ok(None);
    }
    let doc = union_definitions(schemas.iter().map(|s| &s.definition));
    Schema::from_json_schema(&doc)
        .map(Some)
        .map_err(|source| SegmentError::Schema {
            schema: schemas
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
            source,
        })
}

/// One JSON Schema whose `properties` are those of every definition: objects that several
/// define are merged field by field; a field two definitions type differently becomes untyped
/// (any value checks), so a path valid in either schema stays valid.
pub fn union_definitions<'a>(definitions: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut properties = Map::new();
    for definition in definitions {
        if let Some(props) = definition.get("properties").and_then(Value::as_object) {
            merge_properties(&mut properties, props, 0);
        }
    }
    json!({"type": "object", "properties": properties})
}

fn children(v: &Value) -> Option<&Map<String, Value>> {
    v.get("properties").and_then(Value::as_object)
}

fn merge_properties(into: &mut Map<String, Value>, from: &Map<String, Value>, depth: usize) {
    for (name, theirs) in from {
        let Some(ours) = into.get_mut(name) else {
            into.insert(name.clone(), theirs.clone());
            continue;
        };
        if ours == theirs {
            continue;
        }
        match (children(ours).is_some(), children(theirs)) {
            // Deep enough for any XDM schema; beyond it, the first definition wins.
            (true, Some(_)) if depth > 64 => {}
            (true, Some(theirs)) => {
                if let Some(Value::Object(ours)) = ours.get_mut("properties") {
                    merge_properties(ours, theirs, depth + 1);
                }
            }
            _ if same_type(ours, theirs) => {}
            // Typed differently: untyped, so both usages check.
            _ => *ours = json!({}),
        }
    }
}

fn same_type(a: &Value, b: &Value) -> bool {
    a.get("type") == b.get("type") && a.get("format") == b.get("format")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_catalog::Dataset;
    use cdp_pql::FieldType;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn definitions_are_merged_field_by_field() {
        let a = json!({"type": "object", "properties": {
            "person": {"type": "object", "properties": {"birthYear": {"type": "integer"}}},
            "loyalty": {"type": "string"},
        }});
        let b = json!({"type": "object", "properties": {
            "person": {"type": "object", "properties": {
                "name": {"type": "object", "properties": {"firstName": {"type": "string"}}}}},
            "loyalty": {"type": "number"},
            "birthDate": {"type": "string", "format": "date"},
        }});
        let doc = union_definitions([&a, &b]);
        let s = Schema::from_json_schema(&doc).unwrap();
        assert_eq!(s.field(&path("person.birthYear")), Some(FieldType::Number));
        assert_eq!(
            s.field(&path("person.name.firstName")),
            Some(FieldType::String)
        );
        assert_eq!(s.field(&path("birthDate")), Some(FieldType::Date));
        assert_eq!(s.field(&path("loyalty")), Some(FieldType::Any));
        assert_eq!(s.field(&path("person.nope")), None);
    }

    fn schema(id: &str, class: &str, enabled: bool, props: Value) -> XdmSchema {
        XdmSchema {
            org_id: None,
            id: id.into(),
            version: 1,
            title: id.into(),
            tenant: "acme".into(),
            class: class.into(),
            field_groups: vec![],
            profile_enabled: enabled,
            definition: json!({"type": "object", "properties": props}),
            created_at: 0,
        }
    }

    fn dataset(id: &str, org: &str, schema: &str, enabled: bool) -> Dataset {
        Dataset {
            id: id.into(),
            name: id.into(),
            org_id: org.into(),
            schema_id: schema.into(),
            schema_version: 1,
            profile_enabled: enabled,
            profile_event_ttl_days: None,
            format: Default::default(),
            created_at: 0,
        }
    }

    #[test]
    fn an_orgs_schemas_are_those_its_profile_enabled_datasets_use() {
        let mut c = CatalogState::default();
        let mut add = |s: XdmSchema| {
            c.schemas
                .entry(s.id.clone())
                .or_default()
                .insert(s.version, s);
        };
        add(schema(
            "p",
            PROFILE_CLASS,
            true,
            json!({"person": {"type": "object", "properties": {"age": {"type": "integer"}}}}),
        ));
        add(schema(
            "e",
            "_xdm.context.experienceevent",
            true,
            json!({"eventType": {"type": "string"}}),
        ));
        add(schema(
            "off",
            "_xdm.context.experienceevent",
            false,
            json!({"secret": {"type": "string"}}),
        ));
        add(schema(
            "other",
            PROFILE_CLASS,
            true,
            json!({"theirs": {"type": "string"}}),
        ));
        for d in [
            dataset("dp", "acme", "p", true),
            dataset("de", "acme", "e", true),
            dataset("doff", "acme", "off", true),
            dataset("dother", "globex", "other", true),
        ] {
            c.datasets.insert(d.id.clone(), d);
        }
        let s = OrgSchemas::of(&c, "acme").unwrap();
        let profile = s.profile.as_ref().unwrap();
        assert_eq!(profile.field(&path("person.age")), Some(FieldType::Number));
        assert_eq!(profile.field(&path("theirs")), None);
        let event = s.event.as_ref().unwrap();
        assert_eq!(event.field(&path("eventType")), Some(FieldType::String));
        assert_eq!(event.field(&path("secret")), None);

        // An org without schemas of a kind leaves that entity unchecked.
        let none = OrgSchemas::of(&c, "initech").unwrap();
        assert!(none.profile.is_none() && none.event.is_none());

        // A definition the checker cannot read is an error naming the schema.
        add_bad(&mut c);
        let e = OrgSchemas::of(&c, "acme").unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
    }

    fn add_bad(c: &mut CatalogState) {
        let s = schema("bad", PROFILE_CLASS, true, json!({"x": {"type": "tuple"}}));
        c.schemas.entry("bad".into()).or_default().insert(1, s);
        let d = dataset("dbad", "acme", "bad", true);
        c.datasets.insert(d.id.clone(), d);
    }

    #[test]
    fn a_path_is_possible_where_the_schema_has_it_or_leaves_the_object_open() {
        let closed = json!({"type": "object", "additionalProperties": false, "properties": {
            "person": {"type": "object", "properties": {"name": {"type": "string"}}},
            "tier": {"type": "string"}}});
        assert!(allows(&closed, "person.name"));
        assert!(
            allows(&closed, "person.shoeSize"),
            "person takes any property"
        );
        assert!(!allows(&closed, "loyalty"), "the root is closed");
        assert!(!allows(&closed, "tier.level"), "a string has no fields");
        let open = json!({"type": "object", "properties": {"identityMap": {"type": "object"}}});
        assert!(allows(&open, "person.email"));
    }
}
