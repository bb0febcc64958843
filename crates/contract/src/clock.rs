//! Wall-clock helpers: the catalog's `createdAt` / `rotatedAt` fields, the stages' receipt
//! times and the runtime's timers are milliseconds since the Unix epoch.

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
