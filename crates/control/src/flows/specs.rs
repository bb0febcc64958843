//! `GET /connectionSpecs[/{id}]`: the connection specs (`cdp_catalog::flows::CONNECTION_SPECS`)
//! in AEP's shape: `id`, `name`, `description`, `version`, `attributes.category`, `authSpec`
//! (an array: the credentials a base connection carries, as a JSON Schema) and `targetSpec`
//! (what a target connection names, as a JSON Schema).

use axum::extract::{Path, State};
use axum::Json;
use cdp_catalog::flows::{connection_spec, ConnectionSpec, ParamSpec, CONNECTION_SPECS};
use serde_json::{json, Map, Value};

use super::{FlowApi, FlowError, SPEC_VERSION};
use crate::http::Tenant;

/// A JSON Schema (draft-07, as AEP's specs) of string params.
fn params_schema(description: &str, params: &[ParamSpec]) -> Value {
    let properties: Map<String, Value> = params
        .iter()
        .map(|p| {
            let mut prop = json!({"type": "string", "description": p.description});
            if p.secret {
                // AEP marks secrets this way; the API never shows them back.
                prop["format"] = json!("password");
            }
            (p.name.to_string(), prop)
        })
        .collect();
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name)
        .collect();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// One spec as the API shows it.
pub fn spec_json(spec: &ConnectionSpec) -> Value {
    let auth_spec: Vec<Value> = spec
        .auth_spec_name
        .map(|name| {
            json!({
                "name": name,
                "type": "KeyBased",
                "spec": params_schema(
                    &format!("The credentials of a base connection to {}", spec.name),
                    spec.auth_params,
                ),
            })
        })
        .into_iter()
        .collect();
    let mut v = json!({
        "id": spec.id,
        "name": spec.name,
        "description": spec.description,
        "version": SPEC_VERSION,
        "attributes": {
            "category": spec.category,
            "dataFormats": spec.formats,
        },
        "authSpec": auth_spec,
    });
    if !spec.target_params.is_empty() {
        v["targetSpec"] = json!({
            "name": format!("{} target", spec.name),
            "spec": params_schema(
                &format!("Where inside {} a target connection delivers (its params)", spec.name),
                spec.target_params,
            ),
        });
    }
    v
}

/// `GET /connectionSpecs`: `{"items": [...]}`.
pub async fn list(State(_): State<FlowApi>, _tenant: Tenant) -> Json<Value> {
    let items: Vec<Value> = CONNECTION_SPECS.iter().map(spec_json).collect();
    Json(json!({ "items": items }))
}

/// `GET /connectionSpecs/{id}`.
pub async fn get(
    State(_): State<FlowApi>,
    _tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<Value>, FlowError> {
    connection_spec(&id)
        .map(|s| Json(spec_json(s)))
        .ok_or(FlowError::UnknownSpec(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_catalog::flows::{EVENT_HUBS_SPEC, KAFKA_SPEC, KINESIS_SPEC, PROFILE_SOURCE_SPEC};

    fn spec(id: &str) -> Value {
        spec_json(connection_spec(id).unwrap())
    }

    #[test]
    fn kinesis_lists_its_credentials_and_target() {
        let k = spec(KINESIS_SPEC);
        assert_eq!(k["name"], "Amazon Kinesis");
        assert_eq!(k["attributes"]["category"], "destination");
        let auth = &k["authSpec"][0];
        assert_eq!(auth["name"], "Amazon Kinesis authentication credentials");
        assert_eq!(
            auth["spec"]["required"],
            json!(["accessKeyId", "secretKey", "region"])
        );
        assert!(auth["spec"]["properties"]["connectionUrl"].is_object());
        assert_eq!(
            auth["spec"]["properties"]["secretKey"]["format"],
            "password"
        );
        assert_eq!(
            k["targetSpec"]["spec"]["required"],
            json!(["stream", "region"])
        );
    }

    #[test]
    fn the_others() {
        let hubs = spec(EVENT_HUBS_SPEC);
        let props = &hubs["authSpec"][0]["spec"]["properties"];
        assert!(props["endpoint"]["description"]
            .as_str()
            .unwrap()
            .contains("servicebus.windows.net:9093"));
        assert_eq!(
            hubs["targetSpec"]["spec"]["required"],
            json!(["eventHubName"])
        );
        let kafka = spec(KAFKA_SPEC);
        assert_eq!(kafka["name"], "Kafka");
        assert_eq!(kafka["attributes"]["dataFormats"], json!(["json", "avro"]));
        assert_eq!(kafka["targetSpec"]["spec"]["required"], json!(["topic"]));
        let source = spec(PROFILE_SOURCE_SPEC);
        assert_eq!(source["name"], "Unified Profile Service");
        assert_eq!(source["attributes"]["category"], "source");
        assert_eq!(source["authSpec"], json!([]));
        assert!(source.get("targetSpec").is_none());
    }
}
