//! What the catalog holds: streaming connections, API keys, XDM schema versions and datasets, as
//! they are stored in the catalog topic and shown by the APIs (camelCase JSON).

use cdp_contract::records::NamespaceTraits;
use serde::{Deserialize, Serialize};

use crate::flows::{Connection, Flow, SourceConnection, TargetConnection};

/// What kind of identifier an identity namespace holds (the contract's, re-exported for the
/// catalog's users).
pub use cdp_contract::records::IdentityType;

/// The one payload type a stream accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayloadType {
    #[default]
    Json,
    Xml,
}

/// `schemaRef` as in XDM message headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// A streaming connection (an "inlet"): where events are posted and how they are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stream {
    /// Also the connection id and inlet id in the collection URLs.
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub org_id: String,
    pub sandbox: String,
    pub payload_type: PayloadType,
    pub authentication_required: bool,
    /// Requests per second allowed on this stream (burst of one second); `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_ref: Option<SchemaRef>,
    /// Web origins (`https://shop.example`, or `*` for any) whose pages may post to this stream
    /// from a browser. The edge answers their CORS preflights and refuses requests that carry
    /// any other `Origin`, since a simple request (a beacon) is written before a browser could
    /// block its answer. Stored as [`normalize_origin`] leaves them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    pub created_at: i64,
}

impl Stream {
    /// Whether a browser request with this `Origin` header may use the stream. An origin that
    /// is not `scheme://host[:port]` (`null` from a sandboxed frame or a file) only passes `*`.
    pub fn allows_origin(&self, origin: &str) -> bool {
        if self.allowed_origins.iter().any(|o| o == "*") {
            return true;
        }
        let Ok(origin) = normalize_origin(origin) else {
            return false;
        };
        self.allowed_origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&origin))
    }
}

/// Why an `allowedOrigins` entry is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin:?} is not an origin: {reason} (expected `*` or scheme://host[:port], e.g. https://shop.example)")]
pub struct OriginError {
    pub origin: String,
    pub reason: &'static str,
}

/// An origin as browsers send it in `Origin`: lower-case scheme and host, no default port (80
/// for http, 443 for https), nothing after the authority; `*` stays `*`. Entries are compared
/// in this form, so `HTTPS://Shop.Example:443` matches what a browser sends for that site.
pub fn normalize_origin(text: &str) -> Result<String, OriginError> {
    let fail = |reason| OriginError {
        origin: text.to_string(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed == "*" {
        return Ok("*".to_string());
    }
    let (scheme, authority) = trimmed.split_once("://").ok_or_else(|| fail("no scheme"))?;
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(fail("the scheme is not valid"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(fail("an origin has no path, query or fragment"));
    }
    if authority.contains('@') {
        return Err(fail("an origin has no user information"));
    }
    if authority
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(fail("the host contains whitespace"));
    }
    // An IPv6 literal keeps its colons inside brackets; the port follows the bracket.
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| fail("an IPv6 host lacks its closing bracket"))?;
        if inside.is_empty() {
            return Err(fail("the host is empty"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| fail("unexpected text after the IPv6 host"))?,
            ),
        };
        (format!("[{inside}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || (!host.starts_with('[') && host.contains(':')) {
        return Err(fail("the host is empty or not valid"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|n| *n > 0 && p.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| fail("the port is not a number from 1 to 65535"))?;
            let default = matches!((scheme.as_str(), n), ("http", 80) | ("https", 443));
            (!default).then_some(n)
        }
    };
    let host = host.to_ascii_lowercase();
    Ok(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// An API key: its secret is shown once, only a SHA-256 of it is stored. `generation` grows on
/// every rotation; tokens carry the generation they were issued under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub secret_sha256: String,
    pub generation: u32,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<i64>,
    /// What the key (and every token issued from it) may do in its org. Keys stored before
    /// roles existed were only ever used to send events, so that is what they keep.
    #[serde(default = "Role::send_only")]
    pub roles: Vec<Role>,
    /// The org's sandboxes the key reaches; empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sandboxes: Vec<String>,
}

impl XdmSchema {
    /// Whether `org` may use this schema: its own, or a shared one.
    pub fn usable_by(&self, org: &str) -> bool {
        self.org_id.as_deref().is_none_or(|o| o == org)
    }
}

impl ApiKey {
    pub fn may(&self, role: Role) -> bool {
        Role::granted(&self.roles, role)
    }

    pub fn reaches_sandbox(&self, sandbox: &str) -> bool {
        sandbox_reached(&self.sandboxes, sandbox)
    }
}

/// Whether a credential limited to `sandboxes` (empty: all of its org's) reaches `sandbox`.
pub fn sandbox_reached(sandboxes: &[String], sandbox: &str) -> bool {
    sandboxes.is_empty() || sandboxes.iter().any(|s| s == sandbox)
}

/// What an org's credential may do. The operator's admin token is not a role: it does
/// everything, in every org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Post events to the org's authenticated streams (the edge).
    Send,
    /// Read the org's management APIs (every `GET`): streams, schemas and datasets, batches,
    /// segments, profiles and identities, destinations, and the registry.
    Read,
    /// Create, change and delete the org's resources; includes `read`.
    Manage,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Send, Role::Read, Role::Manage];

    pub fn send_only() -> Vec<Role> {
        vec![Role::Send]
    }

    /// Whether holding `self` grants `wanted`.
    pub fn includes(self, wanted: Role) -> bool {
        self == wanted || (self == Role::Manage && wanted == Role::Read)
    }

    /// Whether holding `roles` grants `wanted`.
    pub fn granted(roles: &[Role], wanted: Role) -> bool {
        roles.iter().any(|r| r.includes(wanted))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Send => "send",
            Role::Read => "read",
            Role::Manage => "manage",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a dataset's valid events are encoded on `events.valid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// The XDM entity as JSON (the default: readable with any tool).
    #[default]
    Json,
    /// Avro in the Confluent wire format (magic byte + schema id), schema in the registry.
    Avro,
}

/// One version of an XDM schema: a class, field groups and tenant fields, resolved into one
/// JSON Schema (draft 2020-12). A version is immutable once a dataset uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XdmSchema {
    /// `https://ns.adobe.com/{tenant}/schemas/{name}`, the `schemaRef.id` of messages.
    pub id: String,
    /// The org that owns it (created with that org's credential); `None`: shared by every org,
    /// the operator's to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// 1, 2, … (`application/vnd.adobe.xed-full+json;version=N`).
    pub version: u32,
    pub title: String,
    pub tenant: String,
    /// `_xdm.context.experienceevent` or `_xdm.context.profile`.
    pub class: String,
    pub field_groups: Vec<String>,
    /// The "union" tag: events of this schema may hydrate profiles.
    pub profile_enabled: bool,
    /// The resolved JSON Schema every event body (`xdmEntity`) is validated against.
    pub definition: serde_json::Value,
    pub created_at: i64,
}

/// A dataset: where events of one schema land (Parquet) and whether they feed profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub schema_id: String,
    pub schema_version: u32,
    pub profile_enabled: bool,
    /// How long profiles keep this dataset's events for segmentation, in days (at least one);
    /// `None`: the profile stage's `event_ttl_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_event_ttl_days: Option<u32>,
    #[serde(default)]
    pub format: ValueFormat,
    pub created_at: i64,
}

/// An identity namespace (`ECID`, `CRMID`, `Email`, a tenant's own). The standard ones exist in
/// every sandbox without being stored; a stored one with the same code replaces the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityNamespace {
    /// What identity maps name it by (`CRMID`); unique per org and sandbox, case-sensitive.
    pub code: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub id_type: IdentityType,
    /// At most one value of this namespace per graph (a person has one CRM id).
    #[serde(default)]
    pub unique: bool,
    /// Among unique namespaces, lower wins when deciding which identity owns an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// `None` for the standard namespaces (shown by the API, never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    pub created_at: i64,
}

impl From<&IdentityNamespace> for NamespaceTraits {
    fn from(n: &IdentityNamespace) -> Self {
        Self {
            id_type: n.id_type,
            unique: n.unique.then_some(n.priority.unwrap_or(u32::MAX)),
        }
    }
}

/// How fragments of one person become one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergePolicy {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub sandbox: String,
    /// `_xdm.context.profile`.
    pub schema_class: String,
    pub identity_graph: IdentityGraphChoice,
    pub attribute_merge: AttributeMerge,
    /// One policy per sandbox is the default; the profile stage merges with it.
    pub is_default: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `identityGraph.type`: whether a profile spans the identity graph or one identity only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityGraphChoice {
    #[serde(rename = "type")]
    pub kind: IdentityGraphKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IdentityGraphKind {
    /// No stitching: a profile is the fragments of the identity asked for.
    None,
    /// Stitched over the private identity graph.
    Pdg,
}

/// `attributeMerge`: which fragment wins an attribute two fragments both set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeMerge {
    #[serde(rename = "type")]
    pub kind: AttributeMergeKind,
    /// For `dataSetPrecedence`: dataset ids, highest precedence first. `order` on the wire, as
    /// in AEP's merge policies; records written as `data` still read.
    #[serde(
        default,
        rename = "order",
        alias = "data",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub data: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttributeMergeKind {
    /// The fragment ingested last wins, per attribute.
    TimestampOrdered,
    /// The fragment of the highest-ranked dataset wins; unranked datasets after, by time.
    DataSetPrecedence,
}

/// A segment definition (seed 003): a PQL expression over a sandbox's profiles, classified as
/// streaming (evaluated on every profile update) or batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentDefinition {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub org_id: String,
    pub sandbox: String,
    /// `_xdm.context.profile`.
    pub schema_name: String,
    /// The PQL text (`expression.value`).
    pub expression: String,
    /// Evaluated on every profile update (one of the five streaming query types).
    pub streaming: bool,
    /// The streaming query type (`single event`, …), or why it is batch.
    pub classification: String,
    /// Refers to profile attributes only (other definitions' `inSegment` may stream on it).
    #[serde(default)]
    pub profile_only: bool,
    pub creation_time: i64,
    pub update_time: i64,
}

/// A schedule (seed 003, `/config/schedules`): one per org; `batch_segmentation` evaluates
/// the batch segment definitions over every profile of the sandbox at its time each day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub sandbox: String,
    /// `batch_segmentation` or `export`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Definition ids, or `["*"]` for all.
    pub segments: Vec<String>,
    /// Quartz cron (`0 0 1 * * ?`: every day at 01:00:00 UTC); at most once a day.
    pub schedule: String,
    /// `active` or `inactive`.
    pub state: String,
    pub create_epoch: i64,
    pub update_epoch: i64,
}

/// One value in the catalog topic. The key is `<kind>/<id>`; a tombstone (null value) deletes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CatalogRecord {
    Stream(Stream),
    ApiKey(ApiKey),
    Schema(XdmSchema),
    Dataset(Dataset),
    Namespace(IdentityNamespace),
    MergePolicy(MergePolicy),
    Segment(SegmentDefinition),
    Schedule(Schedule),
    /// A base connection of the Flow Service API (seed 004), its credentials sealed.
    Connection(Connection),
    SourceConnection(SourceConnection),
    TargetConnection(TargetConnection),
    Flow(Flow),
}

impl CatalogRecord {
    pub fn key(&self) -> String {
        match self {
            CatalogRecord::Stream(s) => stream_key(&s.id),
            CatalogRecord::ApiKey(k) => api_key_key(&k.id),
            CatalogRecord::Schema(s) => schema_key(&s.id, s.version),
            CatalogRecord::Dataset(d) => dataset_key(&d.id),
            CatalogRecord::Namespace(n) => namespace_key(
                n.org_id.as_deref().unwrap_or_default(),
                n.sandbox.as_deref().unwrap_or_default(),
                &n.code,
            ),
            CatalogRecord::MergePolicy(m) => merge_policy_key(&m.id),
            CatalogRecord::Segment(d) => segment_key(&d.id),
            CatalogRecord::Schedule(s) => schedule_key(&s.id),
            CatalogRecord::Connection(c) => connection_key(&c.id),
            CatalogRecord::SourceConnection(c) => source_connection_key(&c.id),
            CatalogRecord::TargetConnection(c) => target_connection_key(&c.id),
            CatalogRecord::Flow(f) => flow_key(&f.id),
        }
    }
}

pub fn schema_key(id: &str, version: u32) -> String {
    format!("schema/{id}@{version}")
}

pub fn dataset_key(id: &str) -> String {
    format!("dataset/{id}")
}

pub fn stream_key(id: &str) -> String {
    format!("stream/{id}")
}

/// `namespace/<org>/<sandbox>/<code>`.
pub fn namespace_key(org: &str, sandbox: &str, code: &str) -> String {
    format!("namespace/{org}/{sandbox}/{code}")
}

pub fn schedule_key(id: &str) -> String {
    format!("schedule/{id}")
}

pub fn segment_key(id: &str) -> String {
    format!("segment/{id}")
}

pub fn merge_policy_key(id: &str) -> String {
    format!("mergePolicy/{id}")
}

pub fn api_key_key(id: &str) -> String {
    format!("apiKey/{id}")
}

pub fn connection_key(id: &str) -> String {
    format!("connection/{id}")
}

pub fn source_connection_key(id: &str) -> String {
    format!("sourceConnection/{id}")
}

pub fn target_connection_key(id: &str) -> String {
    format!("targetConnection/{id}")
}

pub fn flow_key(id: &str) -> String {
    format!("flow/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_with_kind_tag() {
        let r = CatalogRecord::ApiKey(ApiKey {
            id: "k1".into(),
            name: "n".into(),
            org_id: "o".into(),
            secret_sha256: "h".into(),
            generation: 2,
            created_at: 1,
            rotated_at: None,
            roles: vec![Role::Read, Role::Manage],
            sandboxes: vec!["prod".into()],
        });
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["kind"], "apiKey");
        assert_eq!(json["orgId"], "o");
        assert_eq!(json["roles"], serde_json::json!(["read", "manage"]));
        let back: CatalogRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.key(), "apiKey/k1");
    }

    #[test]
    fn a_key_stored_before_roles_may_only_send_in_every_sandbox() {
        let old = serde_json::json!({"kind": "apiKey", "id": "k", "name": "n", "orgId": "o",
            "secretSha256": "h", "generation": 1, "createdAt": 0});
        let CatalogRecord::ApiKey(k) = serde_json::from_value(old).unwrap() else {
            panic!("not a key");
        };
        assert_eq!(k.roles, vec![Role::Send]);
        assert!(k.may(Role::Send) && !k.may(Role::Read) && !k.may(Role::Manage));
        assert!(k.reaches_sandbox("prod") && k.reaches_sandbox("dev"));
        let manager = ApiKey {
            roles: vec![Role::Manage],
            sandboxes: vec!["dev".into()],
            ..k
        };
        assert!(manager.may(Role::Read) && manager.may(Role::Manage) && !manager.may(Role::Send));
        assert!(manager.reaches_sandbox("dev") && !manager.reaches_sandbox("prod"));
    }

    #[test]
    fn origins_are_normalized_as_browsers_send_them() {
        for (given, expected) in [
            ("*", "*"),
            ("https://Shop.Example", "https://shop.example"),
            ("HTTPS://shop.example:443", "https://shop.example"),
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://shop.example:80", "https://shop.example:80"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("chrome-extension://abcdef", "chrome-extension://abcdef"),
        ] {
            assert_eq!(normalize_origin(given).as_deref(), Ok(expected), "{given}");
        }
        for bad in [
            "shop.example",
            "https://shop.example/",
            "https://shop.example/path",
            "https://shop.example?q",
            "https://user@shop.example",
            "https://",
            "https://shop.example:0",
            "https://shop.example:99999",
            "https://shop.example:8o",
            "https://:8080",
            "1http://shop.example",
            "http://[::1",
            "http://a b",
            "null",
        ] {
            let e = normalize_origin(bad).unwrap_err();
            assert!(e.to_string().contains("is not an origin"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_stream_allows_its_origins_only() {
        let stream = |origins: &[&str]| Stream {
            id: "s".into(),
            name: "n".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            payload_type: PayloadType::Json,
            authentication_required: false,
            rate_limit: None,
            dataset_id: None,
            schema_ref: None,
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            created_at: 0,
        };
        let shop = stream(&["https://shop.example", "http://127.0.0.1:8080"]);
        assert!(shop.allows_origin("https://shop.example"));
        assert!(shop.allows_origin("https://SHOP.example:443"));
        assert!(shop.allows_origin("http://127.0.0.1:8080"));
        assert!(!shop.allows_origin("http://127.0.0.1:8081"));
        assert!(!shop.allows_origin("http://shop.example"));
        assert!(!shop.allows_origin("null"));
        assert!(!stream(&[]).allows_origin("https://shop.example"));
        let any = stream(&["*"]);
        assert!(any.allows_origin("https://elsewhere.example"));
        assert!(any.allows_origin("null"));
        // Older catalog records have no allowedOrigins, and an empty list is not written.
        let json = serde_json::to_value(stream(&[])).unwrap();
        assert!(json.get("allowedOrigins").is_none(), "{json}");
        let back: Stream = serde_json::from_value(json).unwrap();
        assert!(back.allowed_origins.is_empty());
        let json = serde_json::to_value(&shop).unwrap();
        assert_eq!(json["allowedOrigins"][0], "https://shop.example");
    }
}
