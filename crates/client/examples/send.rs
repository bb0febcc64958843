//! Sends a few page views to a running stack and prints what became of each.
//!
//! ```sh
//! CDP_STREAM_ID=<stream id> CDP_SCHEMA_ID=https://ns.adobe.com/acme/schemas/… \
//!   cargo run -p cdp-client --example send
//! ```
//!
//! Optional: `CDP_EDGE_URL` (default http://127.0.0.1:8080), `CDP_API_KEY` with
//! `CDP_CONTROL_URL` (default http://127.0.0.1:8081) for a stream that requires
//! authentication, `CDP_DATASET_ID`, `CDP_ORG_ID`.

use cdp_client::{Auth, Client, Event, Outcome};
use serde_json::json;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let edge = env("CDP_EDGE_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let stream = env("CDP_STREAM_ID").ok_or("set CDP_STREAM_ID to the stream's id")?;
    let schema = env("CDP_SCHEMA_ID").ok_or("set CDP_SCHEMA_ID to the dataset's schema id")?;
    let mut builder = Client::builder(edge, stream).schema_id(schema);
    if let Some(dataset) = env("CDP_DATASET_ID") {
        builder = builder.dataset_id(dataset);
    }
    if let Some(org) = env("CDP_ORG_ID") {
        builder = builder.org_id(org);
    }
    if let Some(api_key) = env("CDP_API_KEY") {
        let control_url = env("CDP_CONTROL_URL").unwrap_or_else(|| "http://127.0.0.1:8081".into());
        builder = builder.auth(Auth::ApiKey {
            control_url,
            api_key,
        });
    }
    let client = builder.build()?;

    let mut receipts = Vec::new();
    for page in ["home", "shoes", "cart"] {
        let event = Event::new(json!({
            "eventType": "web.webpagedetails.pageViews",
            "web": {"webPageDetails": {"name": page, "URL": format!("https://shop.example.com/{page}")}}
        }))
        .with_identity("ECID", "12345678901234567890123456789012345678", true)
        .with_identity("Email", "alice@example.com", false);
        receipts.push(client.send(event).await?);
    }
    for receipt in receipts {
        let id = receipt.id().to_string();
        match receipt.await {
            Outcome::Accepted { xaction_id, .. } => println!("{id}: accepted ({xaction_id})"),
            Outcome::Refused {
                status_code,
                message,
                ..
            } => println!("{id}: refused {status_code}: {message}"),
            Outcome::Failed(e) => println!("{id}: failed: {e}"),
        }
    }
    // Everything sent is settled by now; close stops the background task.
    client.close().await?;
    println!("{:?}", client.stats());
    Ok(())
}
