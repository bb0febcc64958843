//! Feeds arbitrary text to the parser. It must never panic; every error must
//! point inside the input; every accepted query must survive print → parse and
//! go through check, classify, compile and evaluate without panicking.

#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match cdp_pql::parse(src) {
        Err(err) => {
            for d in err.diagnostics() {
                assert!(d.span.line >= 1 && d.span.col >= 1);
                assert!(d.span.start <= src.len() && d.span.end <= src.len());
            }
            let _ = err.render(src);
        }
        Ok(query) => {
            let printed = cdp_pql::print(&query);
            assert_eq!(cdp_pql::parse(&printed).ok().as_ref(), Some(&query));
            let _ = cdp_pql::check(&query, &cdp_pql::Schemas::default());
            let _ = cdp_pql::classify(&query, &HashMap::new());
            if let Ok(plan) = cdp_pql::Plan::compile(&query) {
                let profile = serde_json::json!({"person": {"birthYear": 1970}});
                let events = vec![serde_json::json!({
                    "eventType": "a", "timestamp": "2026-01-01T00:00:00Z"
                })];
                let members = HashSet::new();
                let now = chrono::DateTime::UNIX_EPOCH;
                let cx = cdp_pql::Context::new(&profile, &events, &members, now);
                let _ = plan.explain(&cx);
            }
        }
    }
});
