//! The card side of vsmartcard's vpcd protocol (CONFORMANCE.md, "vpcd").
//!
//! pcscd's vpcd driver listens on TCP 35963 + slot; the card connects. Every message is a
//! 2-byte big-endian length and a payload. A 1-byte payload is a control code (00 power
//! off, 01 power on, 02 reset, 04 get ATR: only the last is answered); anything else is a
//! command APDU, answered with a response APDU.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::SockRef;

use crate::Card;

/// The vpcd port of a reader slot.
pub fn slot_address(slot: u16) -> String {
    format!("127.0.0.1:{}", 35963 + slot)
}

#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Print every APDU, both ways, to stderr.
    pub trace: bool,
    /// Set TCP_NODELAY and re-arm TCP_QUICKACK after every read. Without them a round trip
    /// waits for delayed ACKs (about 48 ms); kept switchable only to measure that baseline.
    pub tuned: bool,
}

/// Lets another thread (a Ctrl-C handler) stop [`serve`]: it sets the flag and shuts the
/// socket down, which ends a blocking read at once.
#[derive(Debug, Default)]
pub struct Shutdown {
    stop: AtomicBool,
    current: Mutex<Option<TcpStream>>,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(stream) = self.current.lock().ok().as_ref().and_then(|g| g.as_ref()) {
            // Ending the blocking read is all that matters; a socket already closed is fine.
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn register(&self, stream: Option<&TcpStream>) {
        if let Ok(mut guard) = self.current.lock() {
            *guard = stream.and_then(|s| s.try_clone().ok());
        }
    }
}

const CONTROL_POWER_OFF: u8 = 0x00;
const CONTROL_POWER_ON: u8 = 0x01;
const CONTROL_RESET: u8 = 0x02;
const CONTROL_GET_ATR: u8 = 0x04;

/// Serves `card` to vpcd at `address` until `shutdown` is triggered. When vpcd goes away
/// (pcscd restarted, say) the card counts as removed and reconnects with backoff.
pub fn serve(
    card: &mut Card,
    address: &str,
    options: ServeOptions,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let mut backoff = Duration::from_millis(50);
    let mut announced = false;
    while !shutdown.is_triggered() {
        let stream = match TcpStream::connect(address) {
            Ok(stream) => stream,
            Err(e) => {
                if !announced {
                    eprintln!(
                        "valuecard-card: waiting for vpcd at {address} ({e}); is pcscd running with vsmartcard-vpcd?"
                    );
                    announced = true;
                }
                sleep_unless(shutdown, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        announced = false;
        if options.tuned {
            stream.set_nodelay(true)?;
        }
        shutdown.register(Some(&stream));
        eprintln!("valuecard-card: inserted into the reader at {address}");
        let result = session(card, stream, options, shutdown);
        shutdown.register(None);
        // The socket closed: the card is out of the reader, unpowered.
        card.power_off();
        match result {
            Ok(()) => {
                eprintln!("valuecard-card: removed from the reader (vpcd closed the connection)")
            }
            Err(e) if !shutdown.is_triggered() => eprintln!("valuecard-card: connection lost: {e}"),
            Err(_) => {}
        }
    }
    Ok(())
}

fn sleep_unless(shutdown: &Shutdown, total: Duration) {
    let step = Duration::from_millis(20);
    let mut slept = Duration::ZERO;
    while slept < total && !shutdown.is_triggered() {
        std::thread::sleep(step);
        slept += step;
    }
}

/// One connection: frames in, frames out, until vpcd closes.
fn session(
    card: &mut Card,
    mut stream: TcpStream,
    options: ServeOptions,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let mut frame = Vec::with_capacity(apdu_spec::MAX_BUFFER_SIZE_EXTENDED);
    let mut response = Vec::with_capacity(apdu_spec::MAX_BUFFER_SIZE_EXTENDED);
    let mut out = Vec::with_capacity(apdu_spec::MAX_BUFFER_SIZE_EXTENDED);
    loop {
        let mut len = [0u8; 2];
        match stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        quickack(&stream, options)?;
        frame.resize(u16::from_be_bytes(len) as usize, 0);
        stream.read_exact(&mut frame)?;
        quickack(&stream, options)?;
        if shutdown.is_triggered() {
            return Ok(());
        }
        match frame.as_slice() {
            [CONTROL_POWER_OFF] | [CONTROL_POWER_ON] | [CONTROL_RESET] => {
                if options.trace {
                    eprintln!("-- control {:02X}", frame[0]);
                }
                card.reset();
                continue;
            }
            [CONTROL_GET_ATR] => {
                response.clear();
                response.extend_from_slice(apdu_spec::ATR);
            }
            [other] => {
                eprintln!("valuecard-card: unknown vpcd control code {other:02X}, ignored");
                continue;
            }
            _ => {
                if options.trace {
                    eprintln!(">> {}", hex::encode_upper(&frame));
                }
                card.transmit_into(&frame, &mut response);
                if options.trace {
                    eprintln!("<< {}", hex::encode_upper(&response));
                }
            }
        }
        // One write per frame: length and payload together, so that no half frame waits.
        out.clear();
        out.extend_from_slice(&(response.len() as u16).to_be_bytes());
        out.extend_from_slice(&response);
        stream.write_all(&out)?;
        quickack(&stream, options)?;
    }
}

/// vpcd writes a frame's length and payload in two calls without TCP_NODELAY, so its
/// payload waits until our ACK of the length arrives. Linux leaves quick-ACK mode on its
/// own (after each ACK, and when traffic looks interactive): re-arming it after every read
/// and write is what keeps that ACK from being delayed by ~40 ms.
fn quickack(stream: &TcpStream, options: ServeOptions) -> io::Result<()> {
    if options.tuned {
        SockRef::from(stream).set_tcp_quickack(true)?;
    }
    Ok(())
}
