//! The engine's state keys, per input partition:
//!
//! - `p<org>\0<sandbox>\0<profile id>` → the profile's [`crate::record::ProfileRecord`]; the
//!   profile's timer has the same key. Keyed by sandbox first, so a definition change visits
//!   only its own sandbox's profiles (one prefix);
//! - `d<org>\0<sandbox>` → what the sandbox's profiles were last evaluated with
//!   ([`crate::sweep::Mark`]), and a sweep in progress;
//! - `f` → what the flows selected when the partition's members were last exported for newly
//!   selected segments;
//! - `b<schedule id>` → where the partition's run of the schedule stands;
//! - `t<segment id>` → the segment's tally in the partition ([`crate::tally`]).

pub fn sandbox_profiles(org: &str, sandbox: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + org.len() + sandbox.len());
    k.push(b'p');
    k.extend_from_slice(org.as_bytes());
    k.push(0);
    k.extend_from_slice(sandbox.as_bytes());
    k.push(0);
    k
}

pub fn profile(org: &str, sandbox: &str, id: &str) -> Vec<u8> {
    let mut k = sandbox_profiles(org, sandbox);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `(org, sandbox, profile id)` of a profile key.
pub fn parse_profile(key: &[u8]) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix(b"p")?;
    let mut parts = rest.splitn(3, |b| *b == 0);
    let org = std::str::from_utf8(parts.next()?).ok()?;
    let sandbox = std::str::from_utf8(parts.next()?).ok()?;
    let id = std::str::from_utf8(parts.next()?).ok()?;
    Some((org, sandbox, id))
}

pub fn sandbox_mark(org: &str, sandbox: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + org.len() + sandbox.len());
    k.push(b'd');
    k.extend_from_slice(org.as_bytes());
    k.push(0);
    k.extend_from_slice(sandbox.as_bytes());
    k
}

/// Every sandbox mark: `d`.
pub const SANDBOX_MARKS: &[u8] = b"d";

/// `(org, sandbox)` of a sandbox mark key.
pub fn parse_sandbox_mark(key: &[u8]) -> Option<(String, String)> {
    let rest = key.strip_prefix(b"d")?;
    let mut parts = rest.splitn(2, |b| *b == 0);
    let org = std::str::from_utf8(parts.next()?).ok()?;
    let sandbox = std::str::from_utf8(parts.next()?).ok()?;
    Some((org.to_string(), sandbox.to_string()))
}

pub const ACTIVATED: &[u8] = b"f";

pub fn schedule_run(schedule: &str) -> Vec<u8> {
    let mut k = b"b".to_vec();
    k.extend_from_slice(schedule.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_and_a_sandbox_is_one_prefix() {
        let k = profile("acme@AdobeOrg", "prod", "0123abcd");
        assert_eq!(
            parse_profile(&k),
            Some(("acme@AdobeOrg", "prod", "0123abcd"))
        );
        assert!(k.starts_with(&sandbox_profiles("acme@AdobeOrg", "prod")));
        assert!(!k.starts_with(&sandbox_profiles("acme@AdobeOrg", "pro")));
        let m = sandbox_mark("acme", "dev");
        assert_eq!(
            parse_sandbox_mark(&m),
            Some(("acme".to_string(), "dev".to_string()))
        );
        assert!(m.starts_with(SANDBOX_MARKS));
    }
}
