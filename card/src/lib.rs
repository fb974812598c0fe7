//! The valuecard applet emulator: the user's device.
//!
//! Layers, outermost first:
//! - [`vpcd`]: the virtual-card side of vsmartcard's vpcd protocol, so that pcscd sees a card;
//! - [`Card`] (in `iso`): ISO 7816-4 transport concerns (APDU encodings, classes, command
//!   chaining, Le, 61xx and GET RESPONSE), around
//! - [`applet::Applet`]: the card core, which handles complete commands only;
//! - [`state`] and [`storage`]: persistent state, committed atomically once per command.
//!
//! The same [`Card`] runs in-process, behind vpcd, and in the fuzz and property tests.

pub mod applet;
pub mod fuzz;
mod iso;
pub mod state;
pub mod storage;
pub mod vpcd;

pub use iso::{Card, Options};
