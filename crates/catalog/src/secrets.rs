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
//! The key comes from configuration (control's `control.secret_key`, `CDP_CONTROL__SECRET_KEY`)
//! as 64 hex characters or the base64 of 32 bytes ([`SecretKey::from_config`]); every process
//! that opens sealed params (control, the sink stage) needs the same key. Generate one with
//! `openssl rand -hex 32`.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// Opened, but not a JSON object: sealed by something else than [`SecretKey::seal`].
    #[error("sealed params opened but are not a JSON object: {0}")]
    NotAnObject(String),
}

/// The platform's key for sealing secrets: 32 bytes. Its `Debug` shows no key material.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_development() {
            f.write_str("SecretKey(development)")
        } else {
            f.write_str("SecretKey(<redacted>)")
        }
    }
}

/// Secret params sealed by a [`SecretKey`], as stored in the catalog: both fields base64
/// (standard alphabet, padded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sealed {
    /// The 24-byte XChaCha20 nonce, random per sealing.
    pub nonce: String,
    /// The JSON object of params, encrypted, with the 16-byte Poly1305 tag appended.
    pub ciphertext: String,
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key from configuration text: 64 hex characters, or base64 (standard or URL-safe, padded
    /// or not) of exactly 32 bytes. Surrounding whitespace is ignored.
    pub fn from_config(text: &str) -> Result<SecretKey, SecretError> {
        let text = text.trim();
        let bad = || SecretError::BadKey { len: text.len() };
        if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            let bytes = hex::decode(text).map_err(|_| bad())?;
            return <[u8; 32]>::try_from(bytes.as_slice())
                .map(SecretKey)
                .map_err(|_| bad());
        }
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            if let Ok(bytes) = engine.decode(text) {
                if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    return Ok(SecretKey(key));
                }
            }
        }
        Err(bad())
    }

    /// The fixed development key ([`DEV_SECRET_KEY_HEX`]). **Insecure**: it is public; use it
    /// only on a laptop and in tests.
    pub fn development() -> SecretKey {
        let bytes = hex::decode(DEV_SECRET_KEY_HEX).expect("the development key is valid hex");
        SecretKey(<[u8; 32]>::try_from(bytes.as_slice()).expect("the development key is 32 bytes"))
    }

    pub fn is_development(&self) -> bool {
        *self == SecretKey::development()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Encrypts `params` (as JSON) under a fresh random nonce.
    pub fn seal(&self, params: &Map<String, Value>) -> Sealed {
        let plain = serde_json::to_vec(params).expect("a JSON map always encodes");
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, plain.as_slice())
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        Sealed {
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        }
    }

    /// Decrypts what [`SecretKey::seal`] sealed; [`SecretError::WrongKey`] if it was sealed with
    /// another key or altered.
    pub fn open(&self, sealed: &Sealed) -> Result<Map<String, Value>, SecretError> {
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
        let plain = self
            .cipher()
            .decrypt(&XNonce::from(nonce), ciphertext.as_slice())
            .map_err(|_| SecretError::WrongKey)?;
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

    fn other_key() -> SecretKey {
        SecretKey::from_bytes([7; 32])
    }

    #[test]
    fn round_trip() {
        let key = SecretKey::development();
        let sealed = key.seal(&params());
        assert_eq!(key.open(&sealed).unwrap(), params());
        // A fresh nonce every time: the same params never seal alike.
        let again = key.seal(&params());
        assert_ne!(again.nonce, sealed.nonce);
        assert_ne!(again.ciphertext, sealed.ciphertext);
        assert_eq!(key.open(&again).unwrap(), params());
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let sealed = SecretKey::development().seal(&params());
        let e = other_key().open(&sealed).unwrap_err();
        assert_eq!(e, SecretError::WrongKey);
        assert!(e.to_string().contains("another key"), "{e}");
    }

    #[test]
    fn altered_or_damaged_records_are_refused() {
        let key = other_key();
        let mut sealed = key.seal(&params());
        let mut bytes = STANDARD.decode(&sealed.ciphertext).unwrap();
        bytes[0] ^= 1;
        sealed.ciphertext = STANDARD.encode(bytes);
        assert_eq!(key.open(&sealed).unwrap_err(), SecretError::WrongKey);
        let short = Sealed {
            nonce: STANDARD.encode([0u8; 12]),
            ciphertext: sealed.ciphertext.clone(),
        };
        assert!(matches!(key.open(&short), Err(SecretError::Damaged(_))));
        let garbage = Sealed {
            nonce: "%%%".into(),
            ciphertext: sealed.ciphertext,
        };
        assert!(matches!(key.open(&garbage), Err(SecretError::Damaged(_))));
    }

    #[test]
    fn the_ciphertext_does_not_contain_the_secret() {
        let sealed = other_key().seal(&params());
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
        let from_b64 = SecretKey::from_config(&STANDARD.encode(from_hex.0)).unwrap();
        assert_eq!(from_hex, from_b64);
        let from_url = SecretKey::from_config(&URL_SAFE_NO_PAD.encode(from_hex.0)).unwrap();
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
