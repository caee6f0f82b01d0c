//! Cryptography of codex-k8s: AES-256-GCM sealing of tokens at rest (12-byte random nonce
//! prepended to the ciphertext and tag) with the key from `CODEXK8S_TOKEN_ENCRYPTION_KEY`
//! (64 hex characters), and constant-time verification of GitHub's `X-Hub-Signature-256`.

use aes_gcm::aead::{Aead, KeyInit};
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

/// Seals and opens tokens with one AES-256-GCM key.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

impl Sealer {
    /// A sealer from a 64-hex-character key.
    pub fn from_hex(key: &SecretString) -> Result<Self, CryptoError> {
        let bytes = SecretBox::new(Box::new(hex::decode(key.expose_secret().trim()).map_err(|_| CryptoError::BadKey)?));
        if bytes.expose_secret().len() != 32 {
            return Err(CryptoError::BadKey);
        }
        let cipher = Aes256Gcm::new_from_slice(bytes.expose_secret()).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { cipher })
    }

    /// A sealer with a fixed all-zero key, only for filling a config that already failed
    /// validation (it is never used to seal anything).
    pub fn placeholder() -> Self {
        Self { cipher: Aes256Gcm::new(&[0u8; 32].into()) }
    }

    /// Seals `plaintext` as `nonce || ciphertext || tag` with a fresh random nonce. A failure is an
    /// error, never a blob that holds no ciphertext.
    pub fn seal(&self, plaintext: &str) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        let ct = self.cipher.encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes()).map_err(|_| CryptoError::Seal)?;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value produced by [`Sealer::seal`].
    pub fn open(&self, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let pt = self.cipher.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| CryptoError::Open)?;
        String::from_utf8(pt).map(SecretString::from).map_err(|_| CryptoError::NotText)
    }
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

    #[test]
    fn sealing_round_trips_and_uses_fresh_nonces() {
        let s = Sealer::from_hex(&key('a')).unwrap();
        let a = s.seal("ghp_token").unwrap();
        let b = s.seal("ghp_token").unwrap();
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(a.len(), NONCE_LEN + "ghp_token".len() + TAG_LEN);
        assert!(!a.windows(9).any(|w| w == b"ghp_token"), "plaintext must not appear");
        assert_eq!(s.open(&a).unwrap().expose_secret(), "ghp_token");
    }

    #[test]
    fn wrong_key_tampering_and_truncation_are_rejected() {
        let s = Sealer::from_hex(&key('a')).unwrap();
        let other = Sealer::from_hex(&key('b')).unwrap();
        let mut sealed = s.seal("secret").unwrap();
        assert_eq!(other.open(&sealed).unwrap_err(), CryptoError::Open);
        sealed[NONCE_LEN] ^= 1;
        assert_eq!(s.open(&sealed).unwrap_err(), CryptoError::Open);
        assert_eq!(s.open(&[1, 2, 3]).unwrap_err(), CryptoError::Open);
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
