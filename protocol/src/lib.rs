//! The funding protocol's shared pieces (PROTOCOLS.md, "Funding: bank to center").
//!
//! What `apdu-spec` is for the card's wire format, this crate is for the servers': the
//! terminal, the bank and the center all take their token bytes, their blind-signature
//! steps, their key list and their JSON bodies from here.

pub mod api;
pub mod error;
pub mod keylist;
pub mod scheme;
pub mod token;

pub use error::ErrorCode;

/// Seconds since the Unix epoch: every time in the API is one of these.
pub type UnixTime = u64;
