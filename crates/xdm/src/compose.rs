//! Composition: a class, its field groups and the tenant's own fields → one resolved JSON
//! Schema (draft 2020-12) with no references, so any validator can use it as it is.

use serde_json::{json, Map, Value};

use crate::library::{self, Source};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("unknown class {0} (known: _xdm.context.experienceevent, _xdm.context.profile)")]
    UnknownClass(String),
    #[error("unknown field group {0}")]
    UnknownFieldGroup(String),
    #[error("field group {group} does not extend class {class}")]
    WrongClass { group: String, class: String },
    #[error("tenant must be letters, digits or underscores, got {0:?}")]
    BadTenant(String),
    #[error("tenantFields must be an object of JSON Schema properties")]
    BadTenantFields,
    #[error("{0} is defined differently by two sources")]
    Conflict(String),
    #[error("the composed schema is not a valid JSON Schema: {0}")]
    Invalid(String),
}

/// What a tenant schema is made of.
#[derive(Debug, Clone)]
pub struct Composition<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub tenant: &'a str,
    pub class: &'a str,
    pub field_groups: &'a [String],
    pub tenant_fields: Option<&'a Value>,
    pub profile_enabled: bool,
}

/// The result: the class's canonical name, the field groups actually used (canonical names,
/// includes first, no duplicates) and the resolved definition.
#[derive(Debug, Clone)]
pub struct Composed {
    pub class: String,
    pub field_groups: Vec<String>,
    pub definition: Value,
}

pub fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn compose(c: &Composition<'_>) -> Result<Composed, ComposeError> {
    if !valid_tenant(c.tenant) {
        return Err(ComposeError::BadTenant(c.tenant.to_string()));
    }
    let class =
        library::class(c.class).ok_or_else(|| ComposeError::UnknownClass(c.class.into()))?;
    let mut groups: Vec<Source> = Vec::new();
    let names = class
        .includes()
        .into_iter()
        .map(str::to_string)
        .chain(c.field_groups.iter().cloned());
    for name in names {
        let group = library::field_group(&name).ok_or(ComposeError::UnknownFieldGroup(name))?;
        if !group.intended_to_extend().contains(&class.name.as_str()) {
            return Err(ComposeError::WrongClass {
                group: group.name,
                class: class.name,
            });
        }
        if !groups.iter().any(|g| g.name == group.name) {
            groups.push(group);
        }
    }

    let mut properties = class.document["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for g in &groups {
        if let Some(props) = g.document["properties"].as_object() {
            merge_properties(&mut properties, props, "")?;
        }
    }
    if let Some(fields) = c.tenant_fields {
        let Some(fields) = fields.as_object() else {
            return Err(ComposeError::BadTenantFields);
        };
        if fields.values().any(|v| !v.is_object()) {
            return Err(ComposeError::BadTenantFields);
        }
        // The tenant namespace is open: declared fields are typed, others are the tenant's
        // business (the XDM rule that tenant fields never collide with standard ones).
        properties.insert(
            format!("_{}", c.tenant),
            json!({ "type": "object", "properties": fields, "additionalProperties": true }),
        );
    }

    let mut definition = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": c.id,
        "title": c.title,
        "type": "object",
        "meta:class": class.uri,
        "meta:extends": std::iter::once(class.uri.clone())
            .chain(groups.iter().map(|g| g.uri.clone()))
            .collect::<Vec<_>>(),
        "meta:profileEnabled": c.profile_enabled,
        "properties": properties,
        "additionalProperties": false,
    });
    if let Some(required) = class.document.get("required") {
        definition["required"] = required.clone();
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&definition)
        .map_err(|e| ComposeError::Invalid(e.to_string()))?;
    Ok(Composed {
        class: class.name,
        field_groups: groups.into_iter().map(|g| g.name).collect(),
        definition,
    })
}

/// Merges `add` into `into`: objects that both define are merged property by property (so two
/// field groups can both extend `_experience`); anything else must be identical.
fn merge_properties(
    into: &mut Map<String, Value>,
    add: &Map<String, Value>,
    path: &str,
) -> Result<(), ComposeError> {
    for (name, schema) in add {
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        match into.get_mut(name) {
            None => {
                into.insert(name.clone(), schema.clone());
            }
            Some(existing) if existing == schema => {}
            Some(existing) => {
                let both_objects = existing["type"] == "object"
                    && schema["type"] == "object"
                    && existing["additionalProperties"] == schema["additionalProperties"];
                let (Some(a), Some(b)) = (
                    existing
                        .get_mut("properties")
                        .and_then(Value::as_object_mut),
                    schema["properties"].as_object(),
                ) else {
                    return Err(ComposeError::Conflict(here));
                };
                if !both_objects {
                    return Err(ComposeError::Conflict(here));
                }
                merge_properties(a, b, &here)?;
            }
        }
    }
    Ok(())
}
