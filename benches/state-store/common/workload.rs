// Shared by both probes (include!d): the workload and its measurement helpers.
pub fn n() -> u64 {
    std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}
pub const BATCH: u64 = 5_000;
pub const GETS: u64 = 200_000;
pub const CACHE: u64 = 64 << 20;

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// ~40-byte key: 256 "tenants" (the scan prefix) and a hashed id, written in hash order.
pub fn key(i: u64) -> Vec<u8> {
    let h = mix(i);
    format!("t{:03}/{:016x}{:020}", h % 256, h, i).into_bytes() // 5 + 16 + 20 = 41 bytes
}

/// ~300-byte JSON-ish value (profile-like: field names repeat, numbers vary).
pub fn value(i: u64) -> Vec<u8> {
    let h = mix(i ^ 0xdead_beef);
    let mut v = format!(
        r#"{{"id":{i},"email":"u{h:x}@example.com","seen":{},"score":{},"attrs":{{"a":"{:016x}","b":"{:016x}","c":"{:016x}"}},"segments":["s{}","s{}","s{}"],"pad":""#,
        h % 1_000_000_007,
        h % 977,
        mix(h),
        mix(h + 1),
        mix(h + 2),
        h % 13,
        h % 17,
        h % 19
    );
    while v.len() < 298 {
        v.push((b'a' + (mix(h + v.len() as u64) % 26) as u8) as char);
    }
    v.push_str("\"}");
    v.into_bytes()
}

pub const SCAN_PREFIX: &[u8] = b"t007/";

pub fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn du(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                total += du(&e.path());
            } else {
                // allocated blocks, not the apparent length (sparse files)
                use std::os::unix::fs::MetadataExt;
                total += m.blocks() * 512;
            }
        }
    }
    total
}

pub fn report(
    name: &str,
    ins: std::time::Duration,
    gets: std::time::Duration,
    found: u64,
    scan: std::time::Duration,
    scanned: u64,
    dir: &std::path::Path,
) {
    println!(
        "{name}: {} inserts/s ({:.1} s)",
        (n() as f64 / ins.as_secs_f64()) as u64,
        ins.as_secs_f64()
    );
    println!(
        "{name}: {} gets/s ({found}/{GETS} found, {:.2} s)",
        (GETS as f64 / gets.as_secs_f64()) as u64,
        gets.as_secs_f64()
    );
    println!(
        "{name}: prefix scan {:?}: {scanned} keys in {:.1} ms",
        std::str::from_utf8(SCAN_PREFIX).unwrap(),
        scan.as_secs_f64() * 1e3
    );
    println!(
        "{name}: {:.1} MiB on disk",
        du(dir) as f64 / (1 << 20) as f64
    );
    println!("{name}: VmHWM {:.1} MiB", vm_hwm_kb() as f64 / 1024.0);
}

/// Steady state of a stateful stage: transactions of 100 read-modify-writes of random keys.
pub const RMW_TXNS: u64 = 1_000;
pub const RMW_PER_TXN: u64 = 100;

pub fn report_rmw(name: &str, took: std::time::Duration) {
    let ops = RMW_TXNS * RMW_PER_TXN;
    println!(
        "{name}: {} read-modify-writes/s in transactions of {RMW_PER_TXN} ({:.2} s)",
        (ops as f64 / took.as_secs_f64()) as u64,
        took.as_secs_f64()
    );
}
