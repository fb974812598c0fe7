//! Unlinkable funding end to end: `valuecard-backend all` over HTTP, the `valuecard` CLI,
//! and cards, in-process and behind pcscd + vpcd.
//!
//! The crash tests abort the terminal (`VALUECARD_FAULT`, see terminal/src/fault.rs) after
//! each step of a withdrawal, or fail one of its network calls, then run `valuecard
//! recover`; the totals must come out exact, whatever step was cut.

use valuecard_tests::{Backend, PIN, User, assert_interrupted, json, lock_vpcd};

/// The acceptance run: an account with 1,000, a card registered and personalised through the
/// center, 300 withdrawn; the center shows 300 and the bank 700. The card sits behind pcscd.
#[test]
fn withdraw_300_into_a_virtual_card_behind_pcscd() {
    let _lock = lock_vpcd();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let card = backend.virtual_card(0, &dir.path().join("card.state"));
    let user = User::new(&backend, dir.path(), &["--reader", &card.reader], 1000);

    let info = json(&user.run(&["info", "--json"], &[]).expect_ok("info"));
    assert_eq!(info["life_cycle"], "active", "{info}");

    let withdrawn = json(&user.withdraw(300, &[], None).expect_ok("withdraw"));
    assert_eq!(withdrawn["complete"], true, "{withdrawn}");
    assert_eq!(withdrawn["withdrawn"], 300);
    assert_eq!(withdrawn["credited"], 300);
    let pieces: Vec<u64> = withdrawn["pieces"]
        .as_array()
        .expect("pieces")
        .iter()
        .map(|p| p["amount"].as_u64().expect("piece amount"))
        .collect();
    assert_eq!(pieces, [256, 32, 8, 4], "powers of two, largest first");

    assert_eq!(user.center_balance(), 300);
    assert_eq!(user.bank_balance(), 700);

    // Nothing is left in flight, and registering again is refused: personalisation is once.
    assert_eq!(user.recover()["nothing_to_recover"], true);
    let again = user.run(&["card", "register", "--pin", PIN], &[]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again.stderr.contains("already personalised"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_withdrawal_cut_after_any_step_is_finished_exactly_by_recover() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    // Every step of a 300 withdrawal (pieces 256, 32, 8, 4), first and later pieces. Bank
    // request 4 is the first withdrawal (1: balance, 2-3: key lists); center request 1 is
    // the info, 2 the first redemption.
    // With each, what the bank has debited and the center credited when the terminal stops.
    // A failed bank call stops the withdrawals, but the tokens already signed are redeemed.
    let faults = [
        ("journal-blinded", 0, 0),
        ("bank-answered", 256, 0),
        ("bank-answered:3", 296, 0),
        ("journal-signed", 256, 0),
        ("journal-signed:4", 300, 0),
        ("center-answered", 300, 256),
        ("center-answered:3", 300, 296),
        ("journal-redeemed", 300, 256),
        ("journal-redeemed:4", 300, 300),
        ("fail-bank:4", 0, 0),
        ("fail-bank:6", 288, 288),
        ("fail-center:2", 300, 0),
        ("fail-center:5", 300, 296),
    ];
    for (i, &(fault, debited, credited)) in faults.iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case).expect("case dir");
        let state = case.join("card.state");
        let state = state.to_str().expect("utf-8 path");
        let user = User::new(&backend, &case, &["--card-state", state], 1000);

        let cut = user.withdraw(300, &[], Some(fault));
        assert_interrupted(&cut, fault);
        let cut_at = (1000 - user.bank_balance(), user.center_balance());
        assert_eq!(
            cut_at,
            (debited, credited),
            "{fault}: (debited, credited) at the cut"
        );

        let recovered = user.recover();
        assert_eq!(recovered["complete"], true, "{fault}: {recovered}");
        assert_eq!(recovered["dropped"], 0, "{fault}: {recovered}");
        assert_eq!(user.bank_balance(), 700, "{fault}: bank after recover");
        assert_eq!(user.center_balance(), 300, "{fault}: center after recover");

        // The journal is empty, and running the tools again changes nothing.
        assert_eq!(user.recover()["nothing_to_recover"], true, "{fault}");
        user.run(&["redeem", "--json"], &[]).expect_ok("redeem");
        assert_eq!(
            (user.bank_balance(), user.center_balance()),
            (700, 300),
            "{fault}"
        );
    }
}

#[test]
fn redeem_later_keeps_the_tokens_until_valuecard_redeem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let state = dir.path().join("card.state");
    let state = state.to_str().expect("utf-8 path");
    let user = User::new(&backend, dir.path(), &["--card-state", state], 1000);

    let later = json(
        &user
            .withdraw(300, &["--redeem-later"], None)
            .expect_ok("withdraw"),
    );
    assert_eq!(later["credited"], 0, "{later}");
    assert_eq!(user.bank_balance(), 700);
    assert_eq!(user.center_balance(), 0);

    // recover leaves tokens kept for later alone; redeem credits them, once.
    user.recover();
    assert_eq!(user.center_balance(), 0);
    let redeemed = json(&user.run(&["redeem", "--json"], &[]).expect_ok("redeem"));
    assert_eq!(redeemed["credited"], 300, "{redeemed}");
    user.run(&["redeem", "--json"], &[])
        .expect_ok("redeem again");
    assert_eq!((user.bank_balance(), user.center_balance()), (700, 300));
}

#[test]
fn refused_withdrawals_change_nothing_and_journal_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start(&dir.path().join("db"));
    let state = dir.path().join("card.state");
    let state = state.to_str().expect("utf-8 path");
    let user = User::new(&backend, dir.path(), &["--card-state", state], 100);

    let too_much = user.withdraw(300, &[], None);
    assert_eq!(too_much.code, Some(1), "{too_much:?}");
    assert!(
        too_much.stderr.contains("less than 300"),
        "{}",
        too_much.stderr
    );

    let wrong = user.run(
        &["withdraw", "--account", &user.account, "--amount", "50"],
        &[("VALUECARD_CREDENTIAL", "not-the-credential")],
    );
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    assert!(wrong.stderr.contains("credential"), "{}", wrong.stderr);

    let unknown = user.with_credential(
        &["withdraw", "--account", "999999999999", "--amount", "50"],
        None,
    );
    assert_eq!(unknown.code, Some(1), "{unknown:?}");

    assert_eq!((user.bank_balance(), user.center_balance()), (100, 0));
    assert_eq!(user.recover()["nothing_to_recover"], true);
}
