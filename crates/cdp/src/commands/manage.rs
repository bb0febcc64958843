//! Management commands: thin clients of the control API that print its JSON answers.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use cdp::CdpConfig;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::load_config;

#[derive(Args)]
pub struct ControlArgs {
    /// Control API base URL (default: http://<control.listen>).
    #[arg(long, env = "CDP_CONTROL_URL")]
    control_url: Option<String>,
    /// Admin token for the management API (default: control.admin_token from configuration).
    #[arg(long, env = "CDP_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[derive(Subcommand)]
pub enum StreamsCommand {
    /// Create a stream and print it (its id is the connection id in the ingestion URLs).
    Create {
        #[command(flatten)]
        control: ControlArgs,
        #[arg(long)]
        name: String,
        /// The org events must belong to (imsOrgId).
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "prod")]
        sandbox: String,
        /// json or xml: the one payload type the stream accepts on /stream/v0/data.
        #[arg(long, default_value = "json")]
        payload_type: String,
        /// Require a bearer token on every request.
        #[arg(long)]
        auth: bool,
        /// Requests per second (token bucket); unlimited when omitted.
        #[arg(long)]
        rate_limit: Option<u32>,
        #[arg(long)]
        dataset_id: Option<String>,
        /// Schema reference, e.g. https://ns.adobe.com/acme/schemas/abc
        #[arg(long)]
        schema_ref: Option<String>,
        /// An origin whose web pages may post to the stream (CORS), e.g. https://shop.example,
        /// or `*`; repeat for several.
        #[arg(long = "allowed-origin", value_name = "ORIGIN")]
        allowed_origins: Vec<String>,
    },
    /// List streams.
    List {
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Show one stream.
    Get {
        #[command(flatten)]
        control: ControlArgs,
        id: String,
    },
    /// Delete a stream: its endpoints answer 404 within a second.
    Delete {
        #[command(flatten)]
        control: ControlArgs,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key for an org; its secret is printed once. The key (and every token
    /// issued from it) acts only in that org, in its sandboxes, with its roles.
    Create {
        #[command(flatten)]
        control: ControlArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        org: String,
        /// What the key may do, comma-separated: `send` (post events to the org's authenticated
        /// streams), `read` (every GET of the org's management APIs and the schema registry),
        /// `manage` (create, change and delete the org's streams, segments, merge policies,
        /// destinations…; includes read). API keys themselves stay the operator's (admin
        /// token).
        #[arg(long, value_delimiter = ',', value_parser = ["send", "read", "manage"], default_value = "send")]
        roles: Vec<String>,
        /// The org's sandboxes the key reaches, comma-separated (default: all of them).
        #[arg(long, value_delimiter = ',')]
        sandboxes: Vec<String>,
    },
    /// List API keys (without secrets).
    List {
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Give a key a new secret; tokens issued before are refused from now on.
    Rotate {
        #[command(flatten)]
        control: ControlArgs,
        id: String,
    },
    /// Delete a key; its tokens are refused from now on.
    Delete {
        #[command(flatten)]
        control: ControlArgs,
        id: String,
    },
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// The API key (cdpk.<id>.<secret>).
    #[arg(long, env = "CDP_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Days until the token expires.
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// Narrow the token to some of its key's roles, comma-separated (default: all of them).
    /// Asking for a role the key lacks is refused (403).
    #[arg(long, value_delimiter = ',', value_parser = ["send", "read", "manage"])]
    roles: Vec<String>,
    /// Narrow the token to some of its key's sandboxes, comma-separated (default: all it
    /// reaches).
    #[arg(long, value_delimiter = ',')]
    sandboxes: Vec<String>,
}

/// Control's management API, with the admin token (`cdp send` looks streams up through it too).
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    admin_token: String,
}

impl Client {
    pub(crate) fn at(base: &str, admin_token: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            admin_token,
        }
    }

    fn new(config: &CdpConfig, args: ControlArgs) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: args
                .control_url
                .unwrap_or_else(|| format!("http://{}", config.control.listen))
                .trim_end_matches('/')
                .to_string(),
            admin_token: args
                .admin_token
                .unwrap_or_else(|| config.control.admin_token.clone()),
        }
    }

    /// The answer's JSON (`null` when empty); a non-2xx answer is an error with its `detail`.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status();
        // A body that cannot be read is an error, not an empty answer (which would pass for
        // success with nothing to print).
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer of {url} ({status})"))?;
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            bail!("{status}: {detail}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }
}

fn print(v: &Value) -> anyhow::Result<()> {
    if !v.is_null() {
        let text = serde_json::to_string_pretty(v).context("formatting the answer as JSON")?;
        println!("{text}");
    }
    Ok(())
}

pub async fn streams(config: Option<PathBuf>, cmd: StreamsCommand) -> anyhow::Result<()> {
    let config = load_config(config)?;
    use reqwest::Method;
    let v = match cmd {
        StreamsCommand::Create {
            control,
            name,
            org,
            sandbox,
            payload_type,
            auth,
            rate_limit,
            dataset_id,
            schema_ref,
            allowed_origins,
        } => {
            let mut body = json!({
                "name": name, "orgId": org, "sandbox": sandbox, "payloadType": payload_type,
                "authenticationRequired": auth,
            });
            if let Some(r) = rate_limit {
                body["rateLimit"] = json!(r);
            }
            if let Some(d) = dataset_id {
                body["datasetId"] = json!(d);
            }
            if let Some(s) = schema_ref {
                body["schemaRef"] = json!({"id": s, "contentType": "application/vnd.adobe.xed-full+json;version=1"});
            }
            if !allowed_origins.is_empty() {
                body["allowedOrigins"] = json!(allowed_origins);
            }
            Client::new(&config, control)
                .call(Method::POST, "/streams", Some(body))
                .await?
        }
        StreamsCommand::List { control } => {
            Client::new(&config, control)
                .call(Method::GET, "/streams", None)
                .await?
        }
        StreamsCommand::Get { control, id } => {
            Client::new(&config, control)
                .call(Method::GET, &format!("/streams/{id}"), None)
                .await?
        }
        StreamsCommand::Delete { control, id } => {
            Client::new(&config, control)
                .call(Method::DELETE, &format!("/streams/{id}"), None)
                .await?;
            eprintln!("stream {id} deleted");
            Value::Null
        }
    };
    print(&v)
}

pub async fn keys(config: Option<PathBuf>, cmd: KeysCommand) -> anyhow::Result<()> {
    let config = load_config(config)?;
    use reqwest::Method;
    let v =
        match cmd {
            KeysCommand::Create {
                control,
                name,
                org,
                roles,
                sandboxes,
            } => Client::new(&config, control)
                .call(
                    Method::POST,
                    "/api-keys",
                    Some(
                        json!({"name": name, "orgId": org, "roles": roles, "sandboxes": sandboxes}),
                    ),
                )
                .await?,
            KeysCommand::List { control } => {
                Client::new(&config, control)
                    .call(Method::GET, "/api-keys", None)
                    .await?
            }
            KeysCommand::Rotate { control, id } => {
                Client::new(&config, control)
                    .call(Method::POST, &format!("/api-keys/{id}/rotate"), None)
                    .await?
            }
            KeysCommand::Delete { control, id } => {
                Client::new(&config, control)
                    .call(Method::DELETE, &format!("/api-keys/{id}"), None)
                    .await?;
                eprintln!("API key {id} deleted");
                Value::Null
            }
        };
    print(&v)
}

pub async fn token(config: Option<PathBuf>, args: TokenArgs) -> anyhow::Result<()> {
    let config = load_config(config)?;
    let mut body = json!({"apiKey": args.api_key, "days": args.days});
    if !args.roles.is_empty() {
        body["roles"] = json!(args.roles);
    }
    if !args.sandboxes.is_empty() {
        body["sandboxes"] = json!(args.sandboxes);
    }
    let v = Client::new(&config, args.control)
        .call(reqwest::Method::POST, "/tokens", Some(body))
        .await?;
    print(&v)
}

/// `cdp up --demo`: a json stream and an xml stream, and curl lines that use them.
pub async fn demo(config: &CdpConfig, edge: SocketAddr, control: SocketAddr) -> anyhow::Result<()> {
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{control}"),
        admin_token: config.control.admin_token.clone(),
    };
    let org = "DEMO@AdobeOrg";
    let schema = client
        .call(
            reqwest::Method::POST,
            "/xdm/schemas",
            Some(json!({"title": "Demo web events", "tenant": "demo",
                        "class": "_xdm.context.experienceevent",
                        "fieldGroups": ["environment-details", "web-details", "commerce-details"],
                        "profileEnabled": true})),
        )
        .await?;
    let schema_id = schema["id"].as_str().unwrap_or_default().to_string();
    let dataset = client
        .call(
            reqwest::Method::POST,
            "/datasets",
            Some(
                json!({"name": "demo-web", "orgId": org, "schemaRef": {"id": schema_id},
                        "profileEnabled": true}),
            ),
        )
        .await?;
    let dataset_id = dataset["id"].as_str().unwrap_or_default().to_string();
    let json_stream = client
        .call(
            reqwest::Method::POST,
            "/streams",
            Some(json!({"name": "demo-web", "orgId": org, "payloadType": "json", "datasetId": dataset_id})),
        )
        .await?;
    let xml_stream = client
        .call(
            reqwest::Method::POST,
            "/streams",
            Some(json!({"name": "demo-xml", "orgId": org, "payloadType": "xml", "datasetId": dataset_id})),
        )
        .await?;
    let j = json_stream["id"].as_str().unwrap_or_default();
    let x = xml_stream["id"].as_str().unwrap_or_default();
    println!(
        r#"
Demo schema {schema_id}, dataset {dataset_id} and two streams created (org {org}). Try:

  curl -s -X POST http://{edge}/collection/batch/{j} -H 'Content-Type: application/json' -d '{{"messages":[{{"header":{{"schemaRef":{{"id":"{schema_id}","contentType":"application/vnd.adobe.xed-full+json;version=1"}},"imsOrgId":"{org}","datasetId":"{dataset_id}"}},"body":{{"xdmMeta":{{"schemaRef":{{"id":"{schema_id}"}}}},"xdmEntity":{{"_id":"e1","timestamp":"2026-01-01T00:00:00Z","eventType":"web.webpagedetails.pageViews"}}}}}},{{"header":{{"imsOrgId":"other@AdobeOrg"}}}}]}}'

  curl -s -X POST http://{edge}/stream/v0/data/{j} -H 'Content-Type: application/json' -d '{{"field1": "value1", "field2": "value2"}}'

  curl -s -X POST http://{edge}/stream/v0/data/{x} -H 'Content-Type: application/xml' --data-binary '<records><record><field1>value1</field1></record><record><field1>value2</field1></record></records>'

  # a profile: an anonymous page view and a login joined by the cookie, then the stitched profile
  curl -s -X POST http://{edge}/collection/batch/{j} -H 'Content-Type: application/json' -d '{{"messages":[{{"header":{{"schemaRef":{{"id":"{schema_id}","contentType":"application/vnd.adobe.xed-full+json;version=1"}},"imsOrgId":"{org}","datasetId":"{dataset_id}"}},"body":{{"xdmMeta":{{"schemaRef":{{"id":"{schema_id}"}}}},"xdmEntity":{{"_id":"view-1","timestamp":"{now}","eventType":"web.webpagedetails.pageViews","identityMap":{{"ECID":[{{"id":"{ecid}","primary":true}}]}}}}}}}},{{"header":{{"schemaRef":{{"id":"{schema_id}","contentType":"application/vnd.adobe.xed-full+json;version=1"}},"imsOrgId":"{org}","datasetId":"{dataset_id}"}},"body":{{"xdmMeta":{{"schemaRef":{{"id":"{schema_id}"}}}},"xdmEntity":{{"_id":"login-1","timestamp":"{now}","eventType":"web.webinteraction.linkClicks","identityMap":{{"ECID":[{{"id":"{ecid}"}}],"CRMID":[{{"id":"demo-alice","primary":true}}]}}}}}}}}]}}'
  curl -s -H 'Authorization: Bearer {token}' -H 'x-gw-ims-org-id: {org}' 'http://{control}/access/entities?schema.name=_xdm.context.profile&entityId={ecid}&entityIdNS=ECID'

  curl -s -H 'Authorization: Bearer {token}' http://{control}/datasets/{dataset_id}     # record count (after the lake's flush, ~5 s)
  curl -s http://{edge}/metrics | grep cdp_edge
  curl -s -H 'Authorization: Bearer {token}' http://{control}/streams

Dashboard: http://{control}/ui (sign in with the admin token). Synthetic traffic:
  cdp send --stream {j} --events 2000 --rate 100/s
"#,
        token = config.control.admin_token,
        // Profiles keep events of the last day: the demo's profile event is from now.
        now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ecid = "12345678901234567890123456789012345678",
    );
    Ok(())
}
