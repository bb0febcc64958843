//! The profile stage's state keys, per profile id (32 hex characters):
//!
//! - `m<id>` → the profile's [`super::Meta`];
//! - `e<id>/<timestamp, 16 hex>/<item id>` → a [`cdp_contract::records::StoredEvent`], so a profile's
//!   events are one prefix scan, oldest first, and an event arriving twice lands on one key;
//! - `f<id>/<dataset>\0<namespace>\0<value>` → a [`cdp_contract::records::Fragment`] (one per dataset
//!   and owner identity).

use cdp_contract::records::Identity;

pub fn meta(profile: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + profile.len());
    k.push(b'm');
    k.extend_from_slice(profile.as_bytes());
    k
}

pub fn events(profile: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + profile.len());
    k.push(b'e');
    k.extend_from_slice(profile.as_bytes());
    k.push(b'/');
    k
}

pub fn event(profile: &str, timestamp_ms: i64, item_id: &str) -> Vec<u8> {
    let mut k = events(profile);
    k.extend_from_slice(format!("{:016x}/", timestamp_ms.max(0)).as_bytes());
    k.extend_from_slice(item_id.as_bytes());
    k
}

/// The timestamp of an event key.
pub fn event_time(profile: &str, key: &[u8]) -> Option<i64> {
    let start = 2 + profile.len();
    let hex = key.get(start..start + 16)?;
    i64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

pub fn fragments(profile: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + profile.len());
    k.push(b'f');
    k.extend_from_slice(profile.as_bytes());
    k.push(b'/');
    k
}

pub fn fragment(profile: &str, dataset: &str, owner: &Identity) -> Vec<u8> {
    let mut k = fragments(profile);
    for part in [dataset, &owner.ns] {
        k.extend_from_slice(part.as_bytes());
        k.push(0);
    }
    k.extend_from_slice(owner.id.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_by_time_and_read_back() {
        let p = "0123456789abcdef0123456789abcdef";
        let a = event(p, 5, "z");
        let b = event(p, 300, "a");
        assert!(a < b);
        assert!(a.starts_with(&events(p)));
        assert_eq!(event_time(p, &b), Some(300));
        assert!(!fragment(p, "d", &Identity::new("ECID", "1")).starts_with(&events(p)));
    }
}
