include!("../../common/workload.rs");
use fjall::{Database, KeyspaceCreateOptions};
use std::time::Instant;

fn main() {
    let dir = std::path::PathBuf::from("/tmp/storebench/data-fjall");
    let _ = std::fs::remove_dir_all(&dir);
    let db = Database::builder(&dir)
        .cache_size(CACHE)
        .manual_journal_persist(true)
        .open()
        .unwrap();
    let ks = db
        .keyspace("p0", || {
            KeyspaceCreateOptions::default().max_memtable_size(8 << 20)
        })
        .unwrap();

    let t = Instant::now();
    for b in 0..n() / BATCH {
        let mut batch = db.batch().durability(None);
        for i in b * BATCH..(b + 1) * BATCH {
            batch.insert(&ks, key(i), value(i));
        }
        batch.commit().unwrap();
    }
    let ins = t.elapsed();

    let t = Instant::now();
    let mut found = 0;
    for g in 0..GETS {
        let i = mix(g ^ 0x5eed) % n();
        if let Some(v) = ks.get(key(i)).unwrap() {
            found += (!v.is_empty()) as u64;
        }
    }
    let gets = t.elapsed();

    let t = Instant::now();
    let mut scanned = 0;
    for kv in ks.prefix(SCAN_PREFIX) {
        let (_k, v) = kv.into_inner().unwrap();
        scanned += (!v.is_empty()) as u64;
    }
    let scan = t.elapsed();
    let t = Instant::now();
    for r in 0..RMW_TXNS {
        let mut batch = db.batch().durability(None);
        for j in 0..RMW_PER_TXN {
            let i = mix(r * RMW_PER_TXN + j + 77) % n();
            let mut v = ks.get(key(i)).unwrap().unwrap().to_vec();
            v[0] ^= 1;
            batch.insert(&ks, key(i), v);
        }
        batch.commit().unwrap();
    }
    report_rmw("fjall", t.elapsed());
    report("fjall", ins, gets, found, scan, scanned, &dir);
}
