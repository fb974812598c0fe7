//! The valuecard terminal: transports to a card (PC/SC or in-process), an APDU client that
//! does what PC/SC leaves to applications, the conformance runner and the benchmarks. The
//! `valuecard` CLI is built on these.

pub mod backend_client;
pub mod bench;
pub mod client;
pub mod conformance;
pub mod exchange;
pub mod fault;
pub mod funding;
pub mod journal;
pub mod launch;
pub mod pcsc;
pub mod transport;
pub mod units;

pub use client::{CardError, Client, ClientError, PinStatus};
pub use transport::{InProcess, Transport, TransportError};
