//! Cryptography of codex-k8s: AES-256-GCM sealing of tokens at rest with the key from
//! `CODEXK8S_TOKEN_ENCRYPTION_KEY` (64 hex characters), and constant-time verification of
//! GitHub's `X-Hub-Signature-256`.
//!
//! A sealed value is `"ck1" || key id (4 bytes) || nonce (12) || ciphertext || tag (16)`. The key
//! id (the first bytes of the key's SHA-256) says which key sealed it, so keys can be rotated:
//! the current key seals, and the previous ones (`CODEXK8S_TOKEN_ENCRYPTION_KEY_PREVIOUS`) still
//! open what they sealed. The value is bound to where it is stored: the caller's context (table,
//! column and the row's stable identity) is the AEAD's associated data, so a value copied into
//! another row does not open. Values sealed before this format (`nonce || ciphertext || tag`, no
//! context) are still opened with the current key, until they are sealed again.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Errors of sealing and opening.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key is not 64 hexadecimal characters.
    #[error("encryption key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    /// The sealed value is truncated, was sealed with another key, or was tampered with.
    #[error("sealed value cannot be opened (wrong key or corrupted data)")]
    Open,
    /// The opened value is not UTF-8 text.
    #[error("sealed value is not text")]
    NotText,
    /// Encryption failed (a value beyond AES-GCM's limit); nothing was sealed.
    #[error("the value cannot be sealed")]
    Seal,
}

/// Length of the nonce prefix.
pub const NONCE_LEN: usize = 12;
/// Length of the GCM tag suffix.
pub const TAG_LEN: usize = 16;
/// The marker and version of the current format.
const MAGIC: &[u8; 3] = b"ck1";
/// Length of the key id.
const KID_LEN: usize = 4;

/// One key with its id.
struct Key {
    id: [u8; KID_LEN],
    cipher: Aes256Gcm,
}

impl Key {
    fn from_hex(hex_key: &str) -> Result<Self, CryptoError> {
        let bytes = SecretBox::new(Box::new(hex::decode(hex_key.trim()).map_err(|_| CryptoError::BadKey)?));
        if bytes.expose_secret().len() != 32 {
            return Err(CryptoError::BadKey);
        }
        let cipher = Aes256Gcm::new_from_slice(bytes.expose_secret()).map_err(|_| CryptoError::BadKey)?;
        let digest = sha256(bytes.expose_secret());
        Ok(Self { id: [digest[0], digest[1], digest[2], digest[3]], cipher })
    }
}

/// Seals with the current AES-256-GCM key and opens with it or a previous one.
pub struct Sealer {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

impl Sealer {
    /// A sealer from a 64-hex-character key.
    pub fn from_hex(key: &SecretString) -> Result<Self, CryptoError> {
        Ok(Self { current: Key::from_hex(key.expose_secret())?, previous: Vec::new() })
    }

    /// A sealer that seals with `current` and also opens what the comma-separated `previous`
    /// keys sealed (key rotation).
    pub fn with_previous(current: &SecretString, previous: &SecretString) -> Result<Self, CryptoError> {
        let previous = previous.expose_secret().split(',').filter(|k| !k.trim().is_empty()).map(Key::from_hex).collect::<Result<_, _>>()?;
        Ok(Self { current: Key::from_hex(current.expose_secret())?, previous })
    }

    /// A sealer with a fixed all-zero key, only for filling a config that already failed
    /// validation (it is never used to seal anything).
    pub fn placeholder() -> Self {
        Self { current: Key { id: [0; KID_LEN], cipher: Aes256Gcm::new(&[0u8; 32].into()) }, previous: Vec::new() }
    }

    /// Seals `plaintext` for the place named by `context` (e.g.
    /// `repositories.token_encrypted:github:4242`) with a fresh random nonce. A failure is an
    /// error, never a blob that holds no ciphertext.
    pub fn seal(&self, context: &str, plaintext: &str) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(MAGIC.len() + KID_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        let ct = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() })
            .map_err(|_| CryptoError::Seal)?;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value [`Sealer::seal`] made for `context`, with whichever known key sealed it; a
    /// value of the earlier format opens with the current key.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        let pt = match sealed.strip_prefix(MAGIC) {
            Some(rest) if rest.len() >= KID_LEN + NONCE_LEN + TAG_LEN => {
                let (kid, rest) = rest.split_at(KID_LEN);
                let (nonce, ct) = rest.split_at(NONCE_LEN);
                let key = std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == kid).ok_or(CryptoError::Open)?;
                key.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: context.as_bytes() }).map_err(|_| CryptoError::Open)?
            }
            _ if sealed.len() >= NONCE_LEN + TAG_LEN => {
                let (nonce, ct) = sealed.split_at(NONCE_LEN);
                self.current.cipher.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| CryptoError::Open)?
            }
            _ => return Err(CryptoError::Open),
        };
        String::from_utf8(pt).map(SecretString::from).map_err(|_| CryptoError::NotText)
    }

    /// Whether `sealed` was made by the current key in the current format (otherwise it should be
    /// sealed again).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.strip_prefix(MAGIC).is_some_and(|rest| rest.starts_with(&self.current.id))
    }
}

/// The context a repository's token is sealed for: its provider and the provider's stable id of
/// the repository (a rename keeps it; another repository's row does not match it).
pub fn repository_token_context(provider: &str, external_id: i64) -> String {
    format!("repositories.token_encrypted:{provider}:{external_id}")
}

/// Compares two secrets in constant time (for bearer tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// SHA-256 of `data` (for storing bearer tokens by digest and for snapshot checksums).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(data).into()
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha256(data))
}

/// A fresh random bearer token: 32 bytes from the OS generator, hex encoded, with a prefix that
/// says what it is (so a leaked value is recognisable in scans).
pub fn random_token(prefix: &str) -> SecretString {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    SecretString::from(format!("{prefix}{}", hex::encode(b)))
}

/// Verifies `X-Hub-Signature-256` (`sha256=<hex>`) over the raw body in constant time.
/// Any malformed header is simply a mismatch.
pub fn verify_github_signature(secret: &SecretString, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else { return false };
    let Ok(given) = hex::decode(hex_sig) else { return false };
    let expected = github_signature_bytes(secret, body);
    given.len() == expected.len() && bool::from(expected.ct_eq(&given))
}

/// The `X-Hub-Signature-256` header value GitHub would send for `body`.
pub fn github_signature(secret: &SecretString, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(github_signature_bytes(secret, body)))
}

fn github_signature_bytes(secret: &SecretString, body: &[u8]) -> Vec<u8> {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(m) => m,
        Err(_) => return Vec::new(), // HMAC accepts keys of any length; unreachable in practice.
    };
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> SecretString {
        SecretString::from(std::iter::repeat_n(c, 64).collect::<String>())
    }

    const CTX: &str = "repositories.token_encrypted:github:4242";

    #[test]
    fn sealing_round_trips_and_uses_fresh_nonces() {
        let s = Sealer::from_hex(&key('a')).unwrap();
        let a = s.seal(CTX, "ghp_token").unwrap();
        let b = s.seal(CTX, "ghp_token").unwrap();
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(a.len(), 3 + 4 + NONCE_LEN + "ghp_token".len() + TAG_LEN);
        assert!(!a.windows(9).any(|w| w == b"ghp_token"), "plaintext must not appear");
        assert_eq!(s.open(CTX, &a).unwrap().expose_secret(), "ghp_token");
        assert!(s.is_current(&a));
    }

    #[test]
    fn wrong_key_wrong_row_tampering_and_truncation_are_rejected() {
        let s = Sealer::from_hex(&key('a')).unwrap();
        let other = Sealer::from_hex(&key('b')).unwrap();
        let mut sealed = s.seal(CTX, "secret").unwrap();
        assert_eq!(other.open(CTX, &sealed).unwrap_err(), CryptoError::Open);
        // Copied into another repository's row: it does not open there.
        assert_eq!(s.open(&repository_token_context("github", 4243), &sealed).unwrap_err(), CryptoError::Open);
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(s.open(CTX, &sealed).unwrap_err(), CryptoError::Open);
        assert_eq!(s.open(CTX, &[1, 2, 3]).unwrap_err(), CryptoError::Open);
        assert_eq!(s.open(CTX, b"ck1").unwrap_err(), CryptoError::Open);
    }

    #[test]
    fn after_a_rotation_old_values_open_and_new_ones_use_the_new_key() {
        let old = Sealer::from_hex(&key('a')).unwrap();
        let sealed_before = old.seal(CTX, "ghp_old").unwrap();
        let rotated = Sealer::with_previous(&key('b'), &key('a')).unwrap();
        assert_eq!(rotated.open(CTX, &sealed_before).unwrap().expose_secret(), "ghp_old");
        assert!(!rotated.is_current(&sealed_before), "to be sealed again");
        let sealed_after = rotated.seal(CTX, "ghp_new").unwrap();
        assert!(rotated.is_current(&sealed_after));
        assert_eq!(old.open(CTX, &sealed_after).unwrap_err(), CryptoError::Open, "the old key alone cannot open it");
        // Once the old key is dropped from the previous list, what it sealed no longer opens.
        assert_eq!(Sealer::from_hex(&key('b')).unwrap().open(CTX, &sealed_before).unwrap_err(), CryptoError::Open);
        let bad = SecretString::from("nothex".to_string());
        assert_eq!(Sealer::with_previous(&key('b'), &bad).unwrap_err(), CryptoError::BadKey);
    }

    #[test]
    fn values_of_the_earlier_format_still_open_with_the_current_key() {
        // nonce || ciphertext || tag, no key id, no context: how tokens were sealed before.
        let cipher = Aes256Gcm::new_from_slice(&[0xaa; 32]).unwrap();
        let nonce = [7u8; NONCE_LEN];
        let mut legacy = nonce.to_vec();
        legacy.extend(cipher.encrypt(Nonce::from_slice(&nonce), b"ghp_legacy".as_ref()).unwrap());
        let s = Sealer::from_hex(&key('a')).unwrap();
        assert_eq!(s.open(CTX, &legacy).unwrap().expose_secret(), "ghp_legacy");
        assert!(!s.is_current(&legacy));
    }

    #[test]
    fn bad_keys_are_rejected() {
        for k in ["", "abc", &"z".repeat(64), &"a".repeat(62)] {
            assert_eq!(Sealer::from_hex(&SecretString::from(k.to_string())).unwrap_err(), CryptoError::BadKey);
        }
    }

    #[test]
    fn github_signatures_verify_only_when_exact() {
        let secret = SecretString::from("It's a Secret to Everybody".to_string());
        // The example from GitHub's documentation on validating webhook deliveries.
        let body = b"Hello, World!";
        let sig = github_signature(&secret, body);
        assert_eq!(sig, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
        assert!(verify_github_signature(&secret, body, &sig));
        assert!(!verify_github_signature(&secret, b"Hello, World?", &sig));
        assert!(!verify_github_signature(&secret, body, "sha1=abc"));
        assert!(!verify_github_signature(&secret, body, "sha256=zz"));
        assert!(!verify_github_signature(&secret, body, &sig[..sig.len() - 2]));
        assert!(!verify_github_signature(&SecretString::from("other".to_string()), body, &sig));
    }
}
