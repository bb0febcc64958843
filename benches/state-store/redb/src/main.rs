include!("../../common/workload.rs");
use redb::{Builder, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::time::Instant;

const T: TableDefinition<&[u8], &[u8]> = TableDefinition::new("p0");

fn main() {
    let dir = std::path::PathBuf::from("/tmp/storebench/data-redb");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = Builder::new()
        .set_cache_size(CACHE as usize)
        .create(dir.join("state.redb"))
        .unwrap();

    let t = Instant::now();
    for b in 0..n() / BATCH {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(Durability::None).unwrap();
        {
            let mut table = tx.open_table(T).unwrap();
            for i in b * BATCH..(b + 1) * BATCH {
                table
                    .insert(key(i).as_slice(), value(i).as_slice())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let ins = t.elapsed();

    let t = Instant::now();
    let rx = db.begin_read().unwrap();
    let table = rx.open_table(T).unwrap();
    let mut found = 0;
    for g in 0..GETS {
        let i = mix(g ^ 0x5eed) % n();
        if let Some(v) = table.get(key(i).as_slice()).unwrap() {
            found += (v.value().len() > 0) as u64;
        }
    }
    let gets = t.elapsed();

    let t = Instant::now();
    let mut scanned = 0;
    for kv in table.range(SCAN_PREFIX..).unwrap() {
        let (k, v) = kv.unwrap();
        if !k.value().starts_with(SCAN_PREFIX) {
            break;
        }
        scanned += (v.value().len() > 0) as u64;
    }
    let scan = t.elapsed();
    drop(table);
    drop(rx);

    // Steady state: a read transaction per write transaction (reads see the last commit).
    let t = Instant::now();
    for r in 0..RMW_TXNS {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(Durability::None).unwrap();
        let mut updates = Vec::new();
        {
            let rx = db.begin_read().unwrap();
            let table = rx.open_table(T).unwrap();
            for j in 0..RMW_PER_TXN {
                let i = mix(r * RMW_PER_TXN + j + 77) % n();
                let mut v = table
                    .get(key(i).as_slice())
                    .unwrap()
                    .unwrap()
                    .value()
                    .to_vec();
                v[0] ^= 1;
                updates.push((key(i), v));
            }
        }
        {
            let mut table = tx.open_table(T).unwrap();
            for (k, v) in &updates {
                table.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    report_rmw("redb", t.elapsed());
    report("redb", ins, gets, found, scan, scanned, &dir);
}
