//! `valuecard demo`, which `make demo` runs: through pcscd + vpcd and in-process, it tells the
//! whole story and exits 0; when a check fails it exits 1, having stopped all it started.
//!
//! The demo takes the vpcd lock itself: these tests must not hold it while it runs.

use std::ops::Deref;
use std::process::Command;

use valuecard_tests::{Run, bin, lock_vpcd, reader_name, require_pcscd};

struct Demo(Run);

impl Deref for Demo {
    type Target = Run;
    fn deref(&self) -> &Run {
        &self.0
    }
}

impl Demo {
    fn run(args: &[&str]) -> Demo {
        let mut command = Command::new(bin("valuecard"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("VALUECARD_") {
                command.env_remove(name);
            }
        }
        let out = command
            .args(["demo", "--pace", "0"])
            .args(args)
            .output()
            .expect("run valuecard demo");
        Demo(Run::from(out))
    }

    /// Panics unless `lines` appear in this order in the output (whitespace, line breaks
    /// included, counts as one space).
    #[track_caller]
    fn tells(&self, lines: &[&str]) {
        let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let output = flat(&self.stdout);
        let mut from = 0;
        for line in lines {
            let line = flat(line);
            match output[from..].find(&line) {
                Some(at) => from += at + line.len(),
                None => panic!(
                    "{line:?} is not in the demo's output (after what came before):\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                ),
            }
        }
    }

    /// The pids the demo showed for the processes it started.
    fn pids(&self) -> Vec<u32> {
        self.stdout
            .split("(pid ")
            .skip(1)
            .filter_map(|rest| rest.split(')').next()?.parse().ok())
            .collect()
    }

    fn folder(&self) -> std::path::PathBuf {
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("folder:"))
            .expect("the demo names its folder");
        line.trim().into()
    }
}

/// The story, act by act, as both kinds of card tell it.
const STORY: &[&str] = &[
    "== 2. Open a bank account ==",
    "$ valuecard bank open-account --deposit 1000",
    "== 3. Register and personalise both cards ==",
    "card register --pin 123456",
    "card register --pin 654321",
    "== 4. Withdraw 500 JPY for card A, and redeem it later ==",
    "withdraw --account",
    "--amount 500 --redeem-later",
    "$ valuecard redeem",
    "card A 0 0 500 -",
    "the bank was told (UTC) the center was told (it keeps the day)",
    "have no run of 8 bytes in common, apart from the published key data",
    "== 5. Load 300 JPY onto card A ==",
    "card A 300 0 200 -",
    "== 6. Issue two tickets to card B ==",
    "card B 0 0 0 CONCERT 0002, MUSEUM 0001",
    "== 7. Card A pays 100 JPY for card B's museum ticket ==",
    "COMMIT the responder stores 100 JPY",
    "FINISH the initiator stores ticket MUSEUM #0001",
    "card A 200 0 200 MUSEUM 0001",
    "card B 100 0 0 CONCERT 0002",
    "== 8. A second exchange loses a message; the arbiter settles it ==",
    "$ VALUECARD_FAULT=after-confirm valuecard exchange",
    "CONFIRM the initiator escrows 100 JPY",
    "valuecard: injected fault after-confirm: aborting",
    "card A 100 100 200 MUSEUM 0001",
    "card B 100 0 0 CONCERT 0002 (in escrow)",
    "initiator VALID",
    "responder VALID",
    "card: exchange session settled by the arbiter: complete",
    "card: exchange session settled by the arbiter: complete",
    "the arbiter's verdict on session",
    ": complete, signature",
    "(checked with the arbiter key on the cards)",
    "card B got the same verdict, same signature",
    "== 9. Card B unloads its 200 JPY ==",
    "unload --amount 200 --pin 654321",
    "card A 100 0 200 CONCERT 0002, MUSEUM 0001",
    "card B 0 0 200 -",
    ": 500",
    "== The end ==",
    "1000 JPY paid in = 500 in the bank account + 100 on the cards + 400 in the cards' center accounts",
    "no exchange session, nothing in escrow, no load or unload in flight, an empty journal",
    "share no run of 8 bytes, apart from the published key data",
    "the demo ran to the end: every check passed",
];

#[track_caller]
fn ran_to_the_end(demo: &Demo) {
    assert_eq!(
        demo.code,
        Some(0),
        "the demo failed\nstdout:\n{}\nstderr:\n{}",
        demo.stdout,
        demo.stderr
    );
    demo.tells(STORY);
    assert!(!demo.stdout.contains("CHECK FAILED"), "{}", demo.stdout);
    assert!(demo.stderr.trim().is_empty(), "stderr:\n{}", demo.stderr);
    assert!(!demo.folder().exists(), "the demo's folder is left");
}

#[test]
fn the_demo_tells_the_story_through_pcscd() {
    require_pcscd();
    let demo = Demo::run(&[]);
    demo.tells(&[
        "== 1. Set-up ==",
        &format!("in vpcd slot 0, reader \"{}\"", reader_name(0)),
        &format!("in vpcd slot 1, reader \"{}\"", reader_name(1)),
        "$ valuecard readers",
        "card A blank: no key yet",
        &format!("$ valuecard --reader '{}' card register", reader_name(0)),
        "$ valuecard-backend audit --db backend",
        "the auditor found every invariant holding",
    ]);
    ran_to_the_end(&demo);
    demo.tells(&["stopping the two virtual cards, valuecard-backend and the relay"]);
}

#[test]
fn the_demo_tells_the_story_in_process() {
    let demo = Demo::run(&["--in-process"]);
    demo.tells(&[
        "== 1. Set-up ==",
        "$ valuecard-backend keys init --out keys",
        "$ valuecard-card maker-key --out maker.key",
        "$ valuecard-card provision --state card-a.state --maker-key maker.key",
        "card A: in-process",
        "$ valuecard --card-state card-a.state card register",
        "$ valuecard exchange --initiator-state card-a.state --responder-state card-b.state",
        "$ valuecard-backend audit --db backend",
        "the auditor found every invariant holding",
    ]);
    assert!(
        !demo.stdout.contains("valuecard readers"),
        "{}",
        demo.stdout
    );
    ran_to_the_end(&demo);
}

/// A figure that is not what the story expects stops the demo: exit code 1, what was
/// expected and what was found, the logs, and nothing left running.
#[test]
fn a_failed_check_stops_the_demo_and_everything_it_started() {
    require_pcscd();
    let demo = Demo::run(&["--test-wrong-figure"]);
    assert_eq!(demo.code, Some(1), "{}\n{}", demo.stdout, demo.stderr);
    demo.tells(&[
        "== 2. Open a bank account ==",
        "CHECK FAILED: the figures are not what the story expects:",
        "bank account: expected 1001, found 1000",
        "stopping the two virtual cards, valuecard-backend and the relay",
    ]);
    assert!(!demo.stdout.contains("== 3."), "{}", demo.stdout);
    assert!(
        demo.stderr.contains("--- valuecard-backend's log")
            && demo.stderr.contains("--- card A's log")
            && demo
                .stderr
                .contains("error: valuecard demo: a check failed"),
        "{}",
        demo.stderr
    );
    let pids = demo.pids();
    assert_eq!(pids.len(), 3, "backend and two cards: {}", demo.stdout);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still runs"
        );
    }
    assert!(!demo.folder().exists(), "the demo's folder is left");
    // The virtual cards have left the readers.
    let _lock = lock_vpcd();
    let readers = valuecard_terminal::pcsc::list_readers().expect("pcscd");
    for slot in 0..2 {
        let name = reader_name(slot);
        assert!(
            readers.iter().any(|r| r.name == name && !r.card_present),
            "{name} still holds a card"
        );
    }
}
