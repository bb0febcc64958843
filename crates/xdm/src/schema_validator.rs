//! Compiled JSON Schema validators, one per XDM schema version, compiled on first use and kept:
//! a version never changes once a dataset uses it, so the cache never needs invalidating.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cdp_catalog::XdmSchema;
use cdp_contract::quarantine::Violation;
use jsonschema::{Draft, Validator};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("schema {id} version {version} does not compile: {message}")]
pub struct CompileError {
    pub id: String,
    pub version: u32,
    pub message: String,
}

/// Schema id and version.
type SchemaKey = (String, u32);

#[derive(Default, Clone)]
pub struct SchemaValidators {
    compiled: Arc<RwLock<HashMap<SchemaKey, Arc<Validator>>>>,
}

impl SchemaValidators {
    pub fn get(&self, schema: &XdmSchema) -> Result<Arc<Validator>, CompileError> {
        let key = (schema.id.clone(), schema.version);
        if let Some(v) = self
            .compiled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(v.clone());
        }
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema.definition)
            .map_err(|e| CompileError {
                id: schema.id.clone(),
                version: schema.version,
                message: e.to_string(),
            })?;
        let validator = Arc::new(validator);
        self.compiled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, validator.clone());
        Ok(validator)
    }

    /// Every violation of `entity` against `schema`, each with its JSON pointer.
    pub fn validate(&self, schema: &XdmSchema, entity: &Value) -> Result<(), Vec<Violation>> {
        let validator = self.get(schema).map_err(|e| {
            vec![Violation {
                pointer: String::new(),
                message: e.to_string(),
            }]
        })?;
        if validator.is_valid(entity) {
            return Ok(());
        }
        Err(validator
            .iter_errors(entity)
            .map(|e| Violation {
                pointer: e.instance_path().as_str().to_string(),
                message: e.to_string(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> XdmSchema {
        XdmSchema {
            org_id: None,
            id: "https://ns.adobe.com/acme/schemas/s1".into(),
            version: 1,
            title: "t".into(),
            tenant: "acme".into(),
            class: "_xdm.context.experienceevent".into(),
            field_groups: vec![],
            profile_enabled: true,
            definition: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["_id", "timestamp"],
                "properties": {
                    "_id": {"type": "string"},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "web": {"type": "object", "properties": {"isHomePage": {"type": "boolean"}}}
                }
            }),
            created_at: 0,
        }
    }

    #[test]
    fn every_violation_with_its_pointer() {
        let v = SchemaValidators::default();
        assert!(v
            .validate(
                &schema(),
                &json!({"_id": "a", "timestamp": "2026-01-01T00:00:00Z"})
            )
            .is_ok());
        let errs = v
            .validate(
                &schema(),
                &json!({"timestamp": "yesterday", "web": {"isHomePage": "no"}}),
            )
            .unwrap_err();
        let pointers: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert!(pointers.contains(&""), "{errs:?}"); // missing _id is reported on the object
        assert!(pointers.contains(&"/timestamp"), "{errs:?}");
        assert!(pointers.contains(&"/web/isHomePage"), "{errs:?}");
        assert!(errs.iter().any(|e| e.message.contains("_id")), "{errs:?}");
    }
}
