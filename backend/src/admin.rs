//! The admin token of the bank's and the center's admin routes (`Authorization: Bearer
//! <token>`). `all` mode gives both roles the same one.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use valuecard_protocol::ErrorCode;

use crate::error::{ApiError, ApiResult};

/// SHA-256 of the admin token: compared in constant time, and the token itself is not kept
/// in memory longer than startup. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

impl AdminToken {
    /// The token, without surrounding white space; an empty one is refused.
    pub fn new(token: &str) -> Result<Self, String> {
        if token.trim().is_empty() {
            return Err("the admin token is empty".into());
        }
        Ok(AdminToken {
            digest: digest(token),
        })
    }

    /// Checks the token presented (the bearer token of the request, if any).
    pub fn check(&self, presented: Option<&str>) -> ApiResult<()> {
        // The digest is computed whether or not a token came, so that the time taken does
        // not tell which.
        let candidate = digest(presented.unwrap_or(""));
        if presented.is_some() && bool::from(candidate.ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::AdminUnauthorized,
                "the admin token is missing or wrong",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_passes() {
        assert!(AdminToken::new("  \n").is_err());
        let admin = AdminToken::new("s3cret\n").expect("a token");
        assert_eq!(admin.check(Some("s3cret")), Ok(()));
        for wrong in [None, Some(""), Some("s3cre"), Some("s3cret2")] {
            assert_eq!(
                admin.check(wrong).map_err(|e| e.code),
                Err(ErrorCode::AdminUnauthorized),
                "{wrong:?}"
            );
        }
        assert!(!format!("{admin:?}").contains("s3cret"));
    }
}
