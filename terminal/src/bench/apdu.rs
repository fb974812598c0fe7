//! APDU round-trip timing: what one command costs on a transport, measured one command at a
//! time so that the spread shows (a mean would hide delayed-ACK stalls).

use std::time::{Duration, Instant};

use apdu_spec::apdu::encode;
use apdu_spec::commands::{SELECT_BY_NAME, SELECT_NO_RESPONSE, ins};
use apdu_spec::{AID, CLA_ISO, objects};

use crate::transport::{Transport, TransportError};

/// Round trips not measured, so that caches, TCP windows and lazy setup settle first.
pub const WARM_UP: usize = 100;
/// The warm-up of a slow card (a plain-socket one takes ~44 ms a round trip): the full one
/// alone would take seconds.
pub const BASELINE_WARM_UP: usize = 5;

/// GET DATA of the life-cycle state: a tiny command with a 3-byte answer, allowed in every
/// state, that writes nothing.
fn probe() -> Vec<u8> {
    let [p1, p2] = objects::tag::LIFE_CYCLE.to_be_bytes();
    encode(CLA_ISO, ins::GET_DATA, p1, p2, &[], 256, false)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub iterations: usize,
    pub median: Duration,
    pub p10: Duration,
    pub p90: Duration,
    pub min: Duration,
}

impl Stats {
    /// Percentiles of a set of samples (nearest rank). `None` without samples.
    pub fn from_samples(mut samples: Vec<Duration>) -> Option<Stats> {
        samples.sort_unstable();
        let at = |q: usize| samples[(samples.len() - 1) * q / 100];
        Some(Stats {
            iterations: samples.len(),
            min: *samples.first()?,
            p10: at(10),
            median: at(50),
            p90: at(90),
        })
    }
}

/// Times `iterations` round trips of the probe, GET DATA of the life-cycle state (at least
/// one), after [`WARM_UP`] unmeasured ones. The card's answer is not judged: any answer is a
/// round trip.
pub fn apdu_round_trip(
    transport: &mut dyn Transport,
    iterations: usize,
) -> Result<Stats, TransportError> {
    apdu_round_trip_with_warm_up(transport, iterations, WARM_UP)
}

/// Like [`apdu_round_trip`] with a chosen warm-up: a slow baseline card would spend
/// seconds on the full one.
pub fn apdu_round_trip_with_warm_up(
    transport: &mut dyn Transport,
    iterations: usize,
    warm_up: usize,
) -> Result<Stats, TransportError> {
    select_and_warm_up(transport, warm_up)?;
    time_round_trips(transport, iterations)
}

/// Selects the application, then sends `warm_up` unmeasured probes.
pub fn select_and_warm_up(
    transport: &mut dyn Transport,
    warm_up: usize,
) -> Result<(), TransportError> {
    // Select first, so that a card without an implicitly selected application answers the
    // probe with data, as it will in real use.
    let select = encode(
        CLA_ISO,
        ins::SELECT,
        SELECT_BY_NAME,
        SELECT_NO_RESPONSE,
        AID,
        0,
        false,
    );
    transport.transmit(&select)?;
    let probe = probe();
    for _ in 0..warm_up {
        transport.transmit(&probe)?;
    }
    Ok(())
}

/// Times `iterations` round trips of the probe (at least one), with no warm-up.
pub fn time_round_trips(
    transport: &mut dyn Transport,
    iterations: usize,
) -> Result<Stats, TransportError> {
    let probe = probe();
    let mut samples = Vec::with_capacity(iterations.max(1));
    for _ in 0..iterations.max(1) {
        let start = Instant::now();
        transport.transmit(&probe)?;
        samples.push(start.elapsed());
    }
    Ok(Stats::from_samples(samples).unwrap_or(Stats {
        iterations: 0,
        median: Duration::ZERO,
        p10: Duration::ZERO,
        p90: Duration::ZERO,
        min: Duration::ZERO,
    }))
}

/// A duration for a table: µs below a millisecond, ms below a second.
pub fn format_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::InProcess;

    #[test]
    fn percentiles_are_ordered() {
        let stats = apdu_round_trip(&mut InProcess::in_memory(false), 50).expect("bench");
        assert_eq!(stats.iterations, 50);
        assert!(stats.min <= stats.p10 && stats.p10 <= stats.median && stats.median <= stats.p90);
    }

    #[test]
    fn the_probe_is_a_short_get_data() {
        assert_eq!(probe(), [0x00, 0xCA, 0x00, 0xC4, 0x00]);
    }

    #[test]
    fn nearest_rank() {
        let samples = (1..=11).map(Duration::from_micros).collect();
        let s = Stats::from_samples(samples).expect("samples");
        assert_eq!(
            (s.min, s.p10, s.median, s.p90),
            (
                Duration::from_micros(1),
                Duration::from_micros(2),
                Duration::from_micros(6),
                Duration::from_micros(10)
            )
        );
        assert_eq!(format_duration(Duration::from_micros(41)), "41.0 µs");
        assert_eq!(format_duration(Duration::from_micros(48_120)), "48.12 ms");
    }
}
