//! Secrets kept in the catalog topic, sealed: a destination connection's credentials
//! (`auth.params` of `POST /connections`) are encrypted with the platform's [`SecretKey`] before
//! they are written, so the catalog topic — readable by every stage, replicated, compacted,
//! dumped by operators — never holds a secret in clear.
//!
//! The AEAD is XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): a 256-bit key, a random
//! 192-bit nonce per sealing (random nonces of that size never collide in practice), and a tag
//! that makes opening with another key, or opening an altered record, fail instead of answering
//! garbage.
//!
//! Each sealing is bound to what it belongs to (associated data: the connection's id and org),
//! so sealed params copied onto another connection, or another org's, do not open. It names the
//! key that sealed it (a key id, a digest of the key, never the key), so the key can be rotated:
//! a [`SecretKey`] seals with its current key and opens with it or any of the keys it replaced
//! ([`SecretKey::with_previous`]); `cdp secrets reseal` seals everything again with the current
//! one, after which the old keys can be dropped. Records sealed before key ids existed (no key
//! id, no associated data) still open, with any of the keys, until they are resealed.
//!
//! The key comes from configuration (control's `control.secret_key`, `CDP_CONTROL__SECRET_KEY`;
//! the replaced ones in `control.previous_secret_keys`) as 64 hex characters or the base64 of 32
//! bytes ([`SecretKey::from_config`]); every process that opens sealed params (control, the sink
//! stage) needs the same keys. Generate one with `openssl rand -hex 32`.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The development key, in hex: **insecure**, it is in the source code. It is what control uses
/// when no key is configured (with a warning at start-up); anyone can open what it sealed.
pub const DEV_SECRET_KEY_HEX: &str =
    "646576656c6f706d656e742d6f6e6c792d696e7365637572652d6b65792d2121";

const NONCE_LEN: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The configured key is neither 64 hex characters nor the base64 of 32 bytes. The message
    /// never repeats the configured text.
    #[error(
        "the secret key must be 64 hex characters or the base64 of 32 bytes (got {len} characters \
         that are neither); generate one with `openssl rand -hex 32`"
    )]
    BadKey { len: usize },
    /// The nonce or the ciphertext is not base64 of the right size: the record is damaged.
    #[error("sealed params are damaged: {0}")]
    Damaged(String),
    /// The tag did not verify: sealed with another key (the configured key changed since), or
    /// altered.
    #[error(
        "sealed params cannot be opened with this secret key: they were sealed with another key \
         (was the secret key changed?) or altered"
    )]
    WrongKey,
    /// Sealed with a key that is neither the current one nor one it replaced.
    #[error(
        "sealed params were sealed with another key ({key_id}), which is neither \
         control.secret_key nor one of control.previous_secret_keys"
    )]
    UnknownKey { key_id: String },
    /// Opened, but not a JSON object: sealed by something else than [`SecretKey::seal`].
    #[error("sealed params opened but are not a JSON object: {0}")]
    NotAnObject(String),
}

/// The platform's key for sealing secrets (32 bytes), with the keys it replaced, which still
/// open what they sealed. Its `Debug` shows no key material.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    current: [u8; 32],
    previous: Vec<[u8; 32]>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_development() {
            f.write_str("SecretKey(development)")
        } else {
            f.write_str("SecretKey(<redacted>)")
        }
    }
}

/// Secret params sealed by a [`SecretKey`], as stored in the catalog: nonce and ciphertext in
/// base64 (standard alphabet, padded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sealed {
    /// [`SecretKey::id`] of the key that sealed it; absent on records sealed before key ids
    /// (and associated data) existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The 24-byte XChaCha20 nonce, random per sealing.
    pub nonce: String,
    /// The JSON object of params, encrypted, with the 16-byte Poly1305 tag appended.
    pub ciphertext: String,
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            current: bytes,
            previous: Vec::new(),
        }
    }

    /// This key, still opening what `previous` keys sealed.
    pub fn with_previous(mut self, previous: impl IntoIterator<Item = SecretKey>) -> Self {
        for key in previous {
            if key.current != self.current && !self.previous.contains(&key.current) {
                self.previous.push(key.current);
            }
        }
        self
    }

    /// The current key's id: 16 hex characters of a digest of the key (it reveals nothing of
    /// it), stored with what it seals.
    pub fn id(&self) -> String {
        key_id(&self.current)
    }

    /// Whether `sealed` was sealed by another key than the current one, or without a key id:
    /// what `cdp secrets reseal` seals again.
    pub fn needs_reseal(&self, sealed: &Sealed) -> bool {
        sealed.key_id.as_deref() != Some(self.id().as_str())
    }

    /// A key from configuration text: 64 hex characters, or base64 (standard or URL-safe, padded
    /// or not) of exactly 32 bytes. Surrounding whitespace is ignored.
    pub fn from_config(text: &str) -> Result<SecretKey, SecretError> {
        let text = text.trim();
        let bad = || SecretError::BadKey { len: text.len() };
        if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            let bytes = hex::decode(text).map_err(|_| bad())?;
            return <[u8; 32]>::try_from(bytes.as_slice())
                .map(SecretKey::from_bytes)
                .map_err(|_| bad());
        }
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            if let Ok(bytes) = engine.decode(text) {
                if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    return Ok(SecretKey::from_bytes(key));
                }
            }
        }
        Err(bad())
    }

    /// The fixed development key ([`DEV_SECRET_KEY_HEX`]). **Insecure**: it is public; use it
    /// only on a laptop and in tests.
    pub fn development() -> SecretKey {
        let bytes = hex::decode(DEV_SECRET_KEY_HEX).expect("the development key is valid hex");
        SecretKey::from_bytes(
            <[u8; 32]>::try_from(bytes.as_slice()).expect("the development key is 32 bytes"),
        )
    }

    /// Whether the current key is the public development key.
    pub fn is_development(&self) -> bool {
        self.current == SecretKey::development().current
    }

    /// Encrypts `params` (as JSON) under a fresh random nonce with the current key, bound to
    /// `associated` (what the params belong to: opening needs the same bytes).
    pub fn seal(&self, params: &Map<String, Value>, associated: &[u8]) -> Sealed {
        let plain = serde_json::to_vec(params).expect("a JSON map always encodes");
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = cipher(&self.current)
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: associated,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        Sealed {
            key_id: Some(self.id()),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        }
    }

    /// Decrypts what [`SecretKey::seal`] sealed with this key or one it replaced, for the same
    /// `associated` bytes; [`SecretError::WrongKey`] if it was altered or belongs to something
    /// else, [`SecretError::UnknownKey`] if no key here sealed it.
    pub fn open(
        &self,
        sealed: &Sealed,
        associated: &[u8],
    ) -> Result<Map<String, Value>, SecretError> {
        let nonce = STANDARD
            .decode(&sealed.nonce)
            .map_err(|e| SecretError::Damaged(format!("the nonce is not base64: {e}")))?;
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce.as_slice()).map_err(|_| {
            SecretError::Damaged(format!(
                "the nonce has {} bytes, not {NONCE_LEN}",
                nonce.len()
            ))
        })?;
        let ciphertext = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|e| SecretError::Damaged(format!("the ciphertext is not base64: {e}")))?;
        let nonce = XNonce::from(nonce);
        let keys = std::iter::once(&self.current).chain(&self.previous);
        let plain = match &sealed.key_id {
            Some(id) => {
                let key = keys
                    .into_iter()
                    .find(|k| key_id(k) == *id)
                    .ok_or_else(|| SecretError::UnknownKey { key_id: id.clone() })?;
                let payload = Payload {
                    msg: &ciphertext,
                    aad: associated,
                };
                cipher(key)
                    .decrypt(&nonce, payload)
                    .map_err(|_| SecretError::WrongKey)?
            }
            // Sealed before key ids: no associated data, and any of the keys may have sealed it.
            None => keys
                .into_iter()
                .find_map(|k| cipher(k).decrypt(&nonce, ciphertext.as_slice()).ok())
                .ok_or(SecretError::WrongKey)?,
        };
        match serde_json::from_slice::<Value>(&plain) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(SecretError::NotAnObject(format!(
                "a JSON {}",
                match other {
                    Value::Null => "null",
                    Value::Bool(_) => "boolean",
                    Value::Number(_) => "number",
                    Value::String(_) => "string",
                    Value::Array(_) => "array",
                    Value::Object(_) => "object",
                }
            ))),
            Err(e) => Err(SecretError::NotAnObject(e.to_string())),
        }
    }
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"cdp-secret-key-id\0")
        .chain_update(key)
        .finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Map<String, Value> {
        json!({"accessKeyId": "AKIA-TEST", "secretKey": "s3cr3t-KEY", "region": "eu-west-1"})
            .as_object()
            .cloned()
            .unwrap()
    }

    /// What the params belong to, in these tests.
    const AD: &[u8] = b"connection c1 of org o";

    fn other_key() -> SecretKey {
        SecretKey::from_bytes([7; 32])
    }

    #[test]
    fn round_trip() {
        let key = SecretKey::development();
        let sealed = key.seal(&params(), AD);
        assert_eq!(key.open(&sealed, AD).unwrap(), params());
        // A fresh nonce every time: the same params never seal alike.
        let again = key.seal(&params(), AD);
        assert_ne!(again.nonce, sealed.nonce);
        assert_ne!(again.ciphertext, sealed.ciphertext);
        assert_eq!(key.open(&again, AD).unwrap(), params());
    }

    #[test]
    fn a_key_that_did_not_seal_it_is_refused() {
        let sealed = SecretKey::development().seal(&params(), AD);
        let e = other_key().open(&sealed, AD).unwrap_err();
        assert!(matches!(e, SecretError::UnknownKey { .. }), "{e}");
        assert!(e.to_string().contains("previous_secret_keys"), "{e}");
        // A key id that names the other key but a tag that does not verify: another key, or
        // altered.
        let forged = Sealed {
            key_id: Some(other_key().id()),
            ..sealed
        };
        let e = other_key().open(&forged, AD).unwrap_err();
        assert_eq!(e, SecretError::WrongKey);
        assert!(e.to_string().contains("another key"), "{e}");
    }

    #[test]
    fn sealed_params_open_only_for_what_they_were_sealed_for() {
        let key = other_key();
        let sealed = key.seal(&params(), AD);
        assert_eq!(key.open(&sealed, AD).unwrap(), params());
        assert_eq!(
            key.open(&sealed, b"connection c2 of org o").unwrap_err(),
            SecretError::WrongKey
        );
    }

    #[test]
    fn a_rotated_key_still_opens_what_the_old_one_sealed_and_seals_anew() {
        let old = other_key();
        let new = SecretKey::from_bytes([9; 32]).with_previous([old.clone()]);
        let by_old = old.seal(&params(), AD);
        assert_eq!(by_old.key_id, Some(old.id()));
        assert_ne!(old.id(), new.id());
        assert_eq!(new.open(&by_old, AD).unwrap(), params());
        assert!(new.needs_reseal(&by_old));
        let by_new = new.seal(&params(), AD);
        assert!(!new.needs_reseal(&by_new));
        assert_eq!(by_new.key_id, Some(new.id()));
        // Once the old key is dropped, its records no longer open; the new ones do.
        let dropped = SecretKey::from_bytes([9; 32]);
        assert!(matches!(
            dropped.open(&by_old, AD),
            Err(SecretError::UnknownKey { .. })
        ));
        assert_eq!(dropped.open(&by_new, AD).unwrap(), params());
        // The id reveals nothing of the key.
        assert!(!hex::encode([9u8; 32]).contains(&new.id()));
    }

    #[test]
    fn records_sealed_before_key_ids_open_with_any_key_and_need_a_reseal() {
        let old = other_key();
        let plain = serde_json::to_vec(&params()).unwrap();
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = cipher(&old.current)
            .encrypt(&nonce, plain.as_slice())
            .unwrap();
        let legacy: Sealed = serde_json::from_value(json!({
            "nonce": STANDARD.encode(nonce), "ciphertext": STANDARD.encode(ciphertext)}))
        .unwrap();
        assert_eq!(legacy.key_id, None);
        let rotated = SecretKey::development().with_previous([old.clone()]);
        assert_eq!(rotated.open(&legacy, AD).unwrap(), params());
        assert!(rotated.needs_reseal(&legacy));
        assert_eq!(
            SecretKey::development().open(&legacy, AD).unwrap_err(),
            SecretError::WrongKey
        );
    }

    #[test]
    fn altered_or_damaged_records_are_refused() {
        let key = other_key();
        let mut sealed = key.seal(&params(), AD);
        let mut bytes = STANDARD.decode(&sealed.ciphertext).unwrap();
        bytes[0] ^= 1;
        sealed.ciphertext = STANDARD.encode(bytes);
        assert_eq!(key.open(&sealed, AD).unwrap_err(), SecretError::WrongKey);
        let short = Sealed {
            key_id: sealed.key_id.clone(),
            nonce: STANDARD.encode([0u8; 12]),
            ciphertext: sealed.ciphertext.clone(),
        };
        assert!(matches!(key.open(&short, AD), Err(SecretError::Damaged(_))));
        let garbage = Sealed {
            key_id: sealed.key_id.clone(),
            nonce: "%%%".into(),
            ciphertext: sealed.ciphertext,
        };
        assert!(matches!(
            key.open(&garbage, AD),
            Err(SecretError::Damaged(_))
        ));
    }

    #[test]
    fn the_ciphertext_does_not_contain_the_secret() {
        let sealed = other_key().seal(&params(), AD);
        let stored = serde_json::to_string(&sealed).unwrap();
        for needle in ["s3cr3t-KEY", "secretKey", "AKIA-TEST", "eu-west-1"] {
            assert!(!stored.contains(needle), "{needle} in {stored}");
        }
        // Nor in the base64 of the plain text, in case someone "sealed" by encoding.
        let plain = STANDARD.encode(serde_json::to_vec(&params()).unwrap());
        assert!(!stored.contains(&plain[..16]));
    }

    #[test]
    fn keys_from_configuration() {
        let hex_text = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let from_hex = SecretKey::from_config(hex_text).unwrap();
        let from_b64 = SecretKey::from_config(&STANDARD.encode(from_hex.current)).unwrap();
        assert_eq!(from_hex, from_b64);
        let from_url = SecretKey::from_config(&URL_SAFE_NO_PAD.encode(from_hex.current)).unwrap();
        assert_eq!(from_hex, from_url);
        assert_eq!(
            SecretKey::from_config(&format!("  {hex_text}\n")).unwrap(),
            from_hex
        );
        assert_eq!(
            SecretKey::from_config(DEV_SECRET_KEY_HEX).unwrap(),
            SecretKey::development()
        );
        assert!(SecretKey::development().is_development());
        assert!(!from_hex.is_development());
        for bad in [
            "",
            "short",
            &hex_text[..62],
            &STANDARD.encode([1u8; 16]),
            &format!("{hex_text}00"),
        ] {
            let e = SecretKey::from_config(bad).unwrap_err();
            assert!(matches!(e, SecretError::BadKey { .. }), "{bad}: {e}");
        }
        // The error never repeats what was configured.
        let e = SecretKey::from_config("not-a-key-but-maybe-a-password").unwrap_err();
        assert!(!e.to_string().contains("password"), "{e}");
        assert_eq!(format!("{from_hex:?}"), "SecretKey(<redacted>)");
    }
}
