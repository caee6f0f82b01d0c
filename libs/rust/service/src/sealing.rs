//! The token-sealing key settings every service that seals or opens repository tokens reads the
//! same way: `CODEXK8S_TOKEN_ENCRYPTION_KEY` (the current key, 64 hex characters) and, during a
//! rotation, `CODEXK8S_TOKEN_ENCRYPTION_KEY_PREVIOUS` (comma-separated older keys that still open
//! what they sealed). Neither value is ever echoed in an error.

use ck8s_config::{Layers, Reader};
use ck8s_crypto::Sealer;

/// Reads the sealing keys; a missing or malformed key is an issue of the reader (the process
/// then exits naming the setting), and a placeholder sealer fills the config meanwhile.
pub fn read_sealer(r: &mut Reader<'_>, layers: &Layers, what: &str) -> Sealer {
    let key = r.required_secret("TOKEN_ENCRYPTION_KEY", what);
    let previous = r.opt_secret("TOKEN_ENCRYPTION_KEY_PREVIOUS").unwrap_or_else(|| secrecy::SecretString::from(String::new()));
    match Sealer::with_previous(&key, &previous) {
        Ok(s) => s,
        Err(_) => {
            if Sealer::from_hex(&key).is_ok() {
                r.issue("TOKEN_ENCRYPTION_KEY_PREVIOUS", "must be comma-separated keys of exactly 64 hexadecimal characters");
            } else if layers.raw("TOKEN_ENCRYPTION_KEY").is_some_and(|v| !v.trim().is_empty()) {
                r.issue("TOKEN_ENCRYPTION_KEY", "must be exactly 64 hexadecimal characters (32 bytes)");
            }
            Sealer::placeholder()
        }
    }
}
