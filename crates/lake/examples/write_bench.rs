//! Parquet write throughput of the lake's encoding path: ~1 KB XDM events → rows → Parquet
//! file on local disk, the same code a flush runs.
//!
//!     cargo run --release -p cdp-lake --example write_bench -- [ROWS] [FILE_ROWS] [COMPRESSION]
//!
//! Defaults: 100000 rows, 10000 rows per file (the default `lake.flush_records`), zstd.

use std::sync::Arc;
use std::time::Instant;

use cdp_lake::columns::EntityLayout;
use cdp_lake::encode::{self, Provenance};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{json, Value};

fn schema() -> Value {
    let s = |t: &str| json!({"type": t});
    json!({
        "type": "object",
        "properties": {
            "_id": s("string"), "timestamp": s("string"), "eventType": s("string"),
            "identityMap": {"type": "object", "additionalProperties": {"type": "array"}},
            "web": {"type": "object", "properties": {
                "webPageDetails": {"type": "object", "properties": {
                    "name": s("string"), "URL": s("string"), "siteSection": s("string"),
                    "pageViews": {"type": "object", "properties": {"value": s("integer")}}
                }},
                "webReferrer": {"type": "object", "properties": {"URL": s("string"), "type": s("string")}}
            }},
            "environment": {"type": "object", "properties": {
                "browserDetails": {"type": "object", "properties": {
                    "userAgent": s("string"), "acceptLanguage": s("string")
                }},
                "ipV4": s("string")
            }},
            "commerce": {"type": "object", "properties": {
                "order": {"type": "object", "properties": {"priceTotal": s("number"), "currencyCode": s("string")}}
            }},
            "productListItems": {"type": "array", "items": {"type": "object", "properties": {
                "SKU": s("string"), "name": s("string"), "quantity": s("integer"), "priceTotal": s("number")
            }}}
        }
    })
}

fn event(i: usize) -> Value {
    json!({
        "_id": format!("{i:032x}"),
        "timestamp": "2026-01-01T12:00:00.000Z",
        "eventType": "commerce.purchases",
        "identityMap": {"ECID": [{"id": format!("{:038}", i % 50_000), "primary": true}],
                        "Email": [{"id": format!("user{}@example.com", i % 50_000)}]},
        "web": {
            "webPageDetails": {"name": format!("Checkout step {}", i % 5), "URL": format!("https://shop.example.com/checkout/{}?session={i}", i % 5),
                               "siteSection": "checkout", "pageViews": {"value": 1}},
            "webReferrer": {"URL": "https://www.search.example/?q=running+shoes", "type": "search_engine"}
        },
        "environment": {
            "browserDetails": {"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
                               "acceptLanguage": "en-US,en;q=0.9"},
            "ipV4": format!("10.{}.{}.{}", i % 256, (i / 256) % 256, i % 100)
        },
        "commerce": {"order": {"priceTotal": (i % 1000) as f64 + 0.99, "currencyCode": "USD"}},
        "productListItems": [
            {"SKU": format!("SKU-{}", i % 997), "name": "Trail running shoe", "quantity": 1, "priceTotal": 89.5},
            {"SKU": format!("SKU-{}", i % 991), "name": "Running socks (3 pairs)", "quantity": 2, "priceTotal": 11.49}
        ]
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let file_rows: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let compression = args.get(3).cloned().unwrap_or_else(|| "zstd".into());

    // The values as they arrive on events.valid: JSON text.
    let values: Vec<Vec<u8>> = (0..rows)
        .map(|i| event(i).to_string().into_bytes())
        .collect();
    let input_bytes: usize = values.iter().map(Vec::len).sum();
    let dir = std::env::temp_dir().join(format!("cdp-lake-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(LocalFileSystem::new_with_prefix(&dir)?);
    let layout = EntityLayout::from_schema(&schema());
    let codec = encode::compression(&compression);

    // Reference in the same run: parsing the JSON alone, which every path must do.
    let started = Instant::now();
    let parsed = values
        .iter()
        .filter(|v| serde_json::from_slice::<Value>(v).is_ok())
        .count();
    let parse_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut output_bytes = 0usize;
    for (n, chunk) in values.chunks(file_rows).enumerate() {
        let rows: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let entity: Value = serde_json::from_slice(v).unwrap_or(Value::Null);
                let p = Provenance {
                    batch_id: format!("b{}", j / 100),
                    xaction_id: format!("b{}:{j}", j / 100),
                    stream_id: "bench".into(),
                    received_ms: 1_767_268_800_000,
                    partition: 0,
                    offset: (n * file_rows + j) as i64,
                };
                encode::data_row(&layout, &entity, &p)
            })
            .collect();
        let bytes = encode::data_file(&layout, &rows, codec)?;
        output_bytes += bytes.len();
        store
            .put(
                &Path::from(format!("part-{n:05}.parquet")),
                PutPayload::from(bytes),
            )
            .await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "json parse only: rows={parsed} seconds={parse_secs:.2} rows_per_s={:.0} MB_per_s={:.1}",
        parsed as f64 / parse_secs,
        input_bytes as f64 / 1e6 / parse_secs,
    );
    println!(
        "lake write: rows={rows} file_rows={file_rows} compression={compression} avg_event_bytes={} \
         seconds={secs:.2} rows_per_s={:.0} input_MB_per_s={:.1} parquet_MB={:.1} ratio={:.1}x",
        input_bytes / rows.max(1),
        rows as f64 / secs,
        input_bytes as f64 / 1e6 / secs,
        output_bytes as f64 / 1e6,
        input_bytes as f64 / output_bytes.max(1) as f64,
    );
    Ok(())
}
