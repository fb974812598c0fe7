//! The one error type of the roles: a stable [`ErrorCode`] and a message for people. It
//! becomes an `ErrorBody` with the code's HTTP status in `http`.

use std::fmt;

use apdu_spec::units::SIGNATURE_LEN;
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{ErrorBody, ErrorDetail};

use crate::db::DbError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// A fault on the server. The detail goes to the log, never to the client (it may name
    /// tables, paths or values).
    pub fn internal(detail: impl fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error; nothing was changed")
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::internal(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A request field the role does not take.
pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidField, message)
}

/// A card's ECDSA signature from the request's `field`: r || s, exactly [`SIGNATURE_LEN`]
/// bytes.
pub(crate) fn signature_bytes(signature: &[u8], field: &str) -> ApiResult<[u8; SIGNATURE_LEN]> {
    signature.try_into().map_err(|_| {
        invalid(format!(
            "{field}: must be {SIGNATURE_LEN} bytes (r || s), not {}",
            signature.len()
        ))
    })
}
