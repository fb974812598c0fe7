//! The valuecard backend: the bank, the center and the arbiter, each a synchronous core over
//! its own SQL database, served over HTTP by `http`.
//!
//! - [`db`]: the SQL layer (engine abstraction, SQLite engine, versioned migrations).
//! - [`clock`]: injectable time.
//! - [`bank`]: accounts, denomination keys, withdrawals (blind signatures).
//! - [`center`]: card registration, the bank's keys, redemptions; loads, unloads and
//!   tickets between the center and a card.
//! - [`admin`]: the admin token of the admin routes.
//! - [`arbiter`]: verdicts on card-to-card exchanges, one per session, signed with the
//!   arbiter's key.
//! - [`http`]: axum routers, OpenAPI documents, error mapping, request log.
//! - [`keys`]: the scheme's keys, made offline in one step, read from files, and each
//!   database bound to its role's public key.
//! - [`audit`]: the read-only check of every invariant the three databases can show.
//!
//! PROTOCOLS.md, "Funding: bank to center", "Units between center and card" and "Fair
//! exchange: card to card", is the specification; the JSON bodies and the token layout come
//! from `valuecard_protocol`, the card's signed messages from `apdu_spec::units` and
//! `apdu_spec::exchange`.

pub mod admin;
pub mod arbiter;
pub mod audit;
pub mod bank;
pub mod center;
pub mod clock;
pub mod db;
pub mod error;
pub mod http;
pub mod keys;

pub use error::{ApiError, ApiResult};
