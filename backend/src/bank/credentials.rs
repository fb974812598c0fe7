//! Account credentials: stored only as Argon2id PHC strings with a random salt, and checked
//! through a small cache of recent successes.
//!
//! Why a cache: Argon2id with the default parameters (19 MiB, 2 passes) costs tens of
//! milliseconds of one core, which would cap the bank near 30 withdrawals a second when a
//! terminal withdraws a sum as many tokens, one request each. A success is remembered for
//! [`TTL`] seconds under HMAC-SHA256(process key, account || stored hash || credential): the
//! key is random per process and never stored, so the cache holds nothing from which the
//! credential could be found, and changing the stored hash invalidates the entry. Only
//! successes are cached, so a wrong credential always pays the full Argon2 cost. The cache
//! is bounded ([`CAPACITY`]); when full, expired entries go first, and then all of them.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;

use valuecard_protocol::UnixTime;

/// How long a verified credential is remembered, in seconds.
pub const TTL: u64 = 300;
/// How many verified credentials are remembered at most.
pub const CAPACITY: usize = 10_000;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

pub struct Credentials {
    mac_key: [u8; 32],
    recent: Mutex<HashMap<[u8; 32], UnixTime>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            mac_key: rand::rng().random(),
            recent: Mutex::new(HashMap::new()),
        }
    }
}

/// Whether a credential has an allowed length (in characters).
pub fn length_ok(credential: &str) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&credential.chars().count())
}

impl Credentials {
    /// The PHC string to store for a new credential.
    pub fn hash(&self, credential: &str) -> Result<String, String> {
        Argon2::default()
            .hash_password(credential.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| format!("argon2: {e}"))
    }

    /// Whether `credential` is the one `stored` was made from.
    pub fn verify(&self, now: UnixTime, account: &str, stored: &str, credential: &str) -> bool {
        let tag = self.tag(account, stored, credential);
        {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.get(&tag).is_some_and(|until| now <= *until) {
                return true;
            }
        }
        let ok = Argon2::default()
            .verify_password(credential.as_bytes(), stored)
            .is_ok();
        if ok {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() >= CAPACITY {
                recent.retain(|_, until| now <= *until);
                if recent.len() >= CAPACITY {
                    recent.clear();
                }
            }
            recent.insert(tag, now.saturating_add(TTL));
        }
        ok
    }

    fn tag(&self, account: &str, stored: &str, credential: &str) -> [u8; 32] {
        // Hmac takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.mac_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for part in [account, stored, credential] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_cache() {
        let c = Credentials::default();
        let stored = c.hash("correct horse").expect("hashes");
        assert!(stored.starts_with("$argon2id$"));
        assert!(!stored.contains("correct horse"));
        assert!(!c.verify(0, "100000000000", &stored, "wrong horse"));
        assert!(c.verify(0, "100000000000", &stored, "correct horse"));
        // Cached now, but only for the same account, hash and credential.
        assert!(c.verify(TTL, "100000000000", &stored, "correct horse"));
        assert!(!c.verify(TTL, "100000000000", &stored, "correct horsf"));
        assert!(!c.verify(TTL, "100000000001", "$argon2id$bad", "correct horse"));
        assert!(length_ok("12345678") && !length_ok("1234567") && !length_ok(&"x".repeat(129)));
    }
}
