//! The synchronous checks of one XDM message `{header, body}` on the collection endpoints
//! (seed 002): its shape, its schema reference and its org. A message that fails is answered
//! per message and never written; the others are not affected.
//!
//! Messages are checked on their JSON text, reading only the fields the checks need; an
//! accepted message is written byte for byte as the client sent it, unless its `imsOrgId` has to
//! be filled in (the only case that re-encodes it).

use std::borrow::Cow;

use bytes::Bytes;
use cdp_catalog::Stream;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

pub const UNKNOWN_FORMAT: &str = "Message has unknown xdm format";
pub const WRONG_ORG: &str = "Message has an absent or wrong ims org in the header";

#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(borrow, default)]
    header: Option<&'a RawValue>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct HeaderView<'a> {
    #[serde(borrow, default, rename = "schemaRef")]
    schema_ref: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "imsOrgId")]
    ims_org_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "datasetId")]
    dataset_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SchemaRefView<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "contentType")]
    content_type: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BodyView<'a> {
    #[serde(borrow, default, rename = "xdmMeta")]
    xdm_meta: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "xdmEntity")]
    xdm_entity: Option<&'a RawValue>,
}

/// A message that passed the shape and org checks.
#[derive(Debug)]
pub struct AcceptedMessage<'a> {
    /// What goes on the raw topic.
    pub payload: Bytes,
    /// The JSON text of `body.xdmEntity`, for the partition key and validation.
    pub entity: &'a str,
    /// Where the header says the message belongs.
    pub dataset_id: Option<String>,
    pub schema_id: String,
    pub content_type: Option<String>,
}

/// Why a message was refused, worded as the collection API words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Cow<'static, str>,
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

const UNKNOWN: Rejection = Rejection {
    reason: Cow::Borrowed(UNKNOWN_FORMAT),
};

fn is_object(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|r| r.get().trim_start().starts_with('{'))
}

/// Checks one message. `source` is the request body that `message` borrows from, so an
/// unchanged message is passed on without copying.
pub fn check<'a>(
    source: &Bytes,
    message: &'a RawValue,
    stream: &Stream,
) -> Result<AcceptedMessage<'a>, Rejection> {
    let view: MessageView<'a> = serde_json::from_str(message.get()).map_err(|_| UNKNOWN)?;
    let body: BodyView<'a> = match view.body {
        Some(b) if is_object(Some(b)) => serde_json::from_str(b.get()).map_err(|_| UNKNOWN)?,
        _ => return Err(UNKNOWN),
    };
    let entity = match body.xdm_entity {
        Some(e) if is_object(body.xdm_meta) && is_object(Some(e)) => e.get(),
        _ => return Err(UNKNOWN),
    };
    let header: HeaderView<'_> = match view.header {
        Some(h) if is_object(Some(h)) => serde_json::from_str(h.get()).map_err(|_| UNKNOWN)?,
        _ => return Err(UNKNOWN),
    };
    // A header that names its schema only by `xdmSchema.name` (no `schemaRef.id`) cannot be
    // resolved to a versioned schema.
    let schema_ref = header
        .schema_ref
        .filter(|r| is_object(Some(r)))
        .and_then(|r| serde_json::from_str::<SchemaRefView<'_>>(r.get()).ok());
    let Some((schema_id, content_type)) = schema_ref.and_then(|r| {
        r.id.filter(|id| !id.is_empty())
            .map(|id| (id, r.content_type))
    }) else {
        return Err(UNKNOWN);
    };
    let dataset_id = match header.dataset_id.map(RawValue::get) {
        None | Some("null") => None,
        Some(d) => Some(serde_json::from_str::<String>(d).map_err(|_| UNKNOWN)?),
    };
    let payload = match header.ims_org_id.map(RawValue::get) {
        None | Some("null") => with_org(message, &stream.org_id)?,
        Some(org) => match serde_json::from_str::<Cow<'_, str>>(org) {
            Ok(org) if org == stream.org_id => source.slice_ref(message.get().as_bytes()),
            _ => return Err(wrong_org()),
        },
    };
    Ok(AcceptedMessage {
        payload,
        entity,
        dataset_id,
        schema_id: schema_id.into_owned(),
        content_type: content_type.map(Cow::into_owned),
    })
}

fn wrong_org() -> Rejection {
    Rejection {
        reason: Cow::Borrowed(WRONG_ORG),
    }
}

/// The message with `header.imsOrgId` set: the one case where it is re-encoded.
fn with_org(message: &RawValue, org: &str) -> Result<Bytes, Rejection> {
    let mut value: Value = serde_json::from_str(message.get()).map_err(|_| UNKNOWN)?;
    let header = value
        .get_mut("header")
        .and_then(Value::as_object_mut)
        .ok_or(UNKNOWN)?;
    header.insert("imsOrgId".into(), Value::String(org.to_string()));
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|_| UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_catalog::PayloadType;
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
            allowed_origins: Vec::new(),
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

    fn run(v: &Value) -> Result<(Value, String), Rejection> {
        let source = Bytes::from(serde_json::to_vec(v).unwrap());
        let raw: &RawValue = serde_json::from_slice(&source).unwrap();
        check(&source, raw, &stream()).map(|a| {
            (
                serde_json::from_slice(&a.payload).unwrap(),
                a.entity.to_string(),
            )
        })
    }

    #[test]
    fn matching_org_passes_through_unchanged() {
        let m = msg(Some("ORG"));
        let (payload, entity) = run(&m).unwrap();
        assert_eq!(payload, m);
        assert_eq!(entity, r#"{"_id":"1"}"#);
    }

    #[test]
    fn absent_org_is_filled_in() {
        let (payload, _) = run(&msg(None)).unwrap();
        assert_eq!(payload["header"]["imsOrgId"], "ORG");
    }

    #[test]
    fn wrong_org_and_missing_body() {
        assert_eq!(run(&msg(Some("X"))).unwrap_err().reason, WRONG_ORG);
        let mut wrong_type = msg(None);
        wrong_type["header"]["imsOrgId"] = json!(7);
        assert_eq!(run(&wrong_type).unwrap_err().reason, WRONG_ORG);
        let mut no_body = msg(Some("ORG"));
        no_body.as_object_mut().unwrap().remove("body");
        let r = run(&no_body).unwrap_err();
        assert_eq!(
            r.render(&stream()),
            "inletId: [inlet] imsOrgId: [ORG] Message has unknown xdm format"
        );
    }

    #[test]
    fn name_only_schema_and_odd_shapes_are_unknown_format() {
        let m = json!({"header": {"xdmSchema": {"name": "_xdm.context.experienceevent"}, "imsOrgId": "ORG"},
                       "body": {"xdmMeta": {}, "xdmEntity": {}}});
        assert_eq!(run(&m).unwrap_err().reason, UNKNOWN_FORMAT);
        assert_eq!(run(&json!([1])).unwrap_err().reason, UNKNOWN_FORMAT);
        let mut entity_not_object = msg(Some("ORG"));
        entity_not_object["body"]["xdmEntity"] = json!("x");
        assert_eq!(run(&entity_not_object).unwrap_err().reason, UNKNOWN_FORMAT);
        let mut header_not_object = msg(Some("ORG"));
        header_not_object["header"] = json!(null);
        assert_eq!(run(&header_not_object).unwrap_err().reason, UNKNOWN_FORMAT);
    }
}
