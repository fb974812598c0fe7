//! The rows that need pcscd + vpcd: APDU round trips to a tuned virtual card against a
//! plain-socket one, exchanges between two virtual cards, and a virtual card's peak memory.
//! Also the in-process APDU row, whose reference is the tuned card's round trip.

use std::path::Path;
use std::time::Duration;

use super::apdu::{BASELINE_WARM_UP, WARM_UP, select_and_warm_up, time_round_trips};
use super::{Plan, Progress, Result, alternate, exchange, median, memory};
use crate::Client;
use crate::launch::{self, CardOptions, Scheme, VirtualCard};
use crate::pcsc::PcscTransport;
use crate::transport::{InProcess, Transport};

/// How long to wait for a card that pcscd already shows.
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// What the vpcd part measured.
pub(super) struct Figures {
    /// Median APDU round trip, µs.
    pub tuned_apdu: f64,
    pub plain_apdu: f64,
    /// Exchanges per second, and the cryptography's, in the same runs.
    pub exchanges: f64,
    pub exchange_crypto: f64,
    /// VmHWM of the card that ran the APDU and exchange rows, after them and before, KiB.
    pub peak_kib: u64,
    pub idle_kib: u64,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One run's median round trip, µs.
fn round_trips(transport: &mut dyn Transport, apdus: usize) -> Result<f64> {
    Ok(micros(time_round_trips(transport, apdus)?.median))
}

/// Median APDU round trip to an in-process card, µs.
pub(super) fn apdu_in_process(plan: &Plan, progress: &Progress) -> Result<f64> {
    let stage = progress.stage("APDU round trips, in-process card", plan.runs);
    let mut card = InProcess::in_memory(false);
    select_and_warm_up(&mut card, WARM_UP)?;
    let mut medians = Vec::new();
    for _ in 0..plan.runs {
        medians.push(round_trips(&mut card, plan.apdus)?);
        stage.inc();
    }
    let figure = median(medians);
    stage.done(format!("{figure:.2} µs"));
    Ok(figure)
}

fn open(card: &VirtualCard) -> Result<PcscTransport> {
    Ok(PcscTransport::open(Some(&card.reader), OPEN_WAIT)?)
}

fn peak_of(card: &VirtualCard) -> Result<u64> {
    let pid = card
        .pid()
        .ok_or_else(|| super::BenchError::Check(format!("the card in {} is gone", card.reader)))?;
    memory::peak_kib(pid)
}

/// Everything through pcscd + vpcd, holding the vpcd lock throughout.
pub(super) fn measure(
    plan: &Plan,
    progress: &Progress,
    work: &Path,
    scheme: &Scheme,
    keys: &exchange::Keys,
) -> Result<Figures> {
    let stage = progress.wait(format!(
        "taking the vpcd lock {} (a test, demo or bench using the slots holds it)",
        launch::vpcd_lock_path().display()
    ));
    let _lock = launch::lock_vpcd()?;
    stage.done("taken");

    let stage = progress.wait("starting a tuned virtual card and a plain-socket one");
    scheme.provision(&work.join("a.state"))?;
    let mut tuned = VirtualCard::start(0, &work.join("a.state"), &CardOptions::default())?;
    let mut plain = VirtualCard::start(
        1,
        &work.join("plain.state"),
        &CardOptions {
            plain_socket: true,
            ..CardOptions::default()
        },
    )?;
    let mut a = open(&tuned)?;
    let mut baseline = open(&plain)?;
    // The memory row's reference: this card before it does anything but start and select.
    select_and_warm_up(&mut a, 0)?;
    let idle_kib = peak_of(&tuned)?;
    stage.done(format!("{} and {}", tuned.reader, plain.reader));

    let stage = progress.stage(
        "APDU round trips through pcscd + vpcd, tuned card and plain-socket card",
        plan.runs,
    );
    select_and_warm_up(&mut a, WARM_UP)?;
    select_and_warm_up(&mut baseline, BASELINE_WARM_UP)?;
    let (tuned_apdu, plain_apdu) = alternate(
        plan.runs,
        &stage,
        || round_trips(&mut a, plan.apdus),
        || round_trips(&mut baseline, plan.baseline_apdus),
    )?;
    stage.done(format!(
        "{tuned_apdu:.1} µs (plain socket: {:.2} ms)",
        plain_apdu / 1e3
    ));
    drop(baseline);
    plain.kill();

    let stage = progress.wait("starting a second tuned card, personalising both");
    scheme.provision(&work.join("b.state"))?;
    let second = VirtualCard::start(1, &work.join("b.state"), &CardOptions::default())?;
    let mut b = Client::new(open(&second)?);
    let mut a = Client::new(a);
    exchange::prepare(&mut a, keys)?;
    exchange::prepare(&mut b, keys)?;
    stage.done(format!("{} and {}", tuned.reader, second.reader));

    let stage = progress.stage(
        "exchanges through pcscd + vpcd, and their cryptography alone",
        plan.runs,
    );
    let mut crypto = exchange::Crypto::new(&keys.issuer);
    let (exchanges, exchange_crypto) = alternate(
        plan.runs,
        &stage,
        || exchange::timed(&mut a, &mut b, plan.pcsc_exchanges),
        || crypto.timed(plan.exchanges),
    )?;
    stage.done(format!(
        "{exchanges:.0}/s (cryptography alone: {exchange_crypto:.0}/s)"
    ));

    let peak_kib = peak_of(&tuned)?;
    drop((a, b));
    tuned.kill();
    drop(second);
    Ok(Figures {
        tuned_apdu,
        plain_apdu,
        exchanges,
        exchange_crypto,
        peak_kib,
        idle_kib,
    })
}
