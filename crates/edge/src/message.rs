//! The synchronous checks of one XDM message `{header, body}` on the collection endpoints
//! (seed 002): its shape, its schema reference and its org. A message that fails is answered
//! per message and never written; the others are not affected.

use cdp_control::Stream;
use serde_json::{Map, Value};

pub const UNKNOWN_FORMAT: &str = "Message has unknown xdm format";
pub const WRONG_ORG: &str = "Message has an absent or wrong ims org in the header";

/// A message that passed the header checks, with its org filled in.
#[derive(Debug)]
pub struct AcceptedMessage {
    pub message: Value,
}

impl AcceptedMessage {
    pub fn entity(&self) -> Option<&Value> {
        self.message.get("body").and_then(|b| b.get("xdmEntity"))
    }
}

/// Why a message was refused, worded as the collection API words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
}

impl Rejection {
    /// `inletId: [..] imsOrgId: [..] <reason>`, the collection API's per-message text.
    pub fn render(&self, stream: &Stream) -> String {
        format!(
            "inletId: [{}] imsOrgId: [{}] {}",
            stream.id, stream.org_id, self.reason
        )
    }
}

pub fn check(mut message: Value, stream: &Stream) -> Result<AcceptedMessage, Rejection> {
    let unknown = Rejection {
        reason: UNKNOWN_FORMAT,
    };
    let Some(obj) = message.as_object_mut() else {
        return Err(unknown);
    };
    if !has_xdm_body(obj) {
        return Err(unknown);
    }
    let Some(header) = obj.get_mut("header").and_then(Value::as_object_mut) else {
        return Err(unknown);
    };
    // A header that names its schema only by `xdmSchema.name` (no `schemaRef.id`) cannot be
    // resolved to a versioned schema.
    let has_schema_ref = header
        .get("schemaRef")
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty());
    if !has_schema_ref {
        return Err(unknown);
    }
    match header.get("imsOrgId") {
        None | Some(Value::Null) => {
            header.insert("imsOrgId".into(), Value::String(stream.org_id.clone()));
        }
        Some(Value::String(org)) if *org == stream.org_id => {}
        Some(_) => return Err(Rejection { reason: WRONG_ORG }),
    }
    Ok(AcceptedMessage { message })
}

fn has_xdm_body(obj: &Map<String, Value>) -> bool {
    obj.get("body").and_then(Value::as_object).is_some_and(|b| {
        b.get("xdmMeta").is_some_and(Value::is_object)
            && b.get("xdmEntity").is_some_and(Value::is_object)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_control::PayloadType;
    use serde_json::json;

    fn stream() -> Stream {
        Stream {
            id: "inlet".into(),
            name: "n".into(),
            description: None,
            org_id: "ORG".into(),
            sandbox: "prod".into(),
            payload_type: PayloadType::Json,
            authentication_required: false,
            rate_limit: None,
            dataset_id: None,
            schema_ref: None,
            created_at: 0,
        }
    }

    fn msg(org: Option<&str>) -> Value {
        let mut header = json!({"schemaRef": {"id": "https://ns.adobe.com/t/schemas/s"}});
        if let Some(o) = org {
            header["imsOrgId"] = json!(o);
        }
        json!({"header": header, "body": {"xdmMeta": {}, "xdmEntity": {"_id": "1"}}})
    }

    #[test]
    fn absent_org_is_filled_in() {
        let ok = check(msg(None), &stream()).unwrap();
        assert_eq!(ok.message["header"]["imsOrgId"], "ORG");
        assert_eq!(ok.entity().unwrap()["_id"], "1");
    }

    #[test]
    fn wrong_org_and_missing_body() {
        assert_eq!(
            check(msg(Some("X")), &stream()).unwrap_err().reason,
            WRONG_ORG
        );
        let mut no_body = msg(Some("ORG"));
        no_body.as_object_mut().unwrap().remove("body");
        let r = check(no_body, &stream()).unwrap_err();
        assert_eq!(
            r.render(&stream()),
            "inletId: [inlet] imsOrgId: [ORG] Message has unknown xdm format"
        );
    }

    #[test]
    fn name_only_schema_is_unknown_format() {
        let m = json!({"header": {"xdmSchema": {"name": "_xdm.context.experienceevent"}, "imsOrgId": "ORG"},
                       "body": {"xdmMeta": {}, "xdmEntity": {}}});
        assert_eq!(check(m, &stream()).unwrap_err().reason, UNKNOWN_FORMAT);
        assert_eq!(
            check(json!([1]), &stream()).unwrap_err().reason,
            UNKNOWN_FORMAT
        );
    }
}
