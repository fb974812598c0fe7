//! `valuecard`: the terminal's command line. The work happens in the library; `cmd` holds one
//! file per subcommand.

mod cli;
mod cmd;
mod settings;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    init_logging();
    quiet_when_stdout_closes();
    let matches = cli::Cli::command().get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // After a panic, `cli` and `matches` are never looked at again.
    let run = std::panic::AssertUnwindSafe(|| cmd::run(cli, &matches));
    let outcome = match std::panic::catch_unwind(run) {
        Ok(outcome) => outcome,
        Err(panic) if is_closed_stdout(panic.as_ref()) => return ExitCode::from(CLOSED_STDOUT),
        Err(panic) => std::panic::resume_unwind(panic),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.message);
            if let Some(hint) = &e.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.code)
        }
    }
}

/// The exit code of a process that SIGPIPE killed (128 + 13), as `valuecard ... | head` expects.
const CLOSED_STDOUT: u8 = 141;

/// `valuecard readers | head -1`: once whoever reads standard output has gone, std's print
/// macros panic. That is no error of ours, so it prints nothing; `main` then ends with the
/// exit code of a process killed by SIGPIPE. SIGPIPE itself stays ignored, as Rust sets it:
/// at its default it would kill `valuecard demo` on the spot, while this panic unwinds and
/// so stops the cards and the backend the demo started (their `Drop`).
fn quiet_when_stdout_closes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_closed_stdout(info.payload()) {
            report(info);
        }
    }));
}

/// Whether a panic is std's "failed printing to stdout: Broken pipe (os error 32)", the
/// message of a reader that has gone (EPIPE's text is "Broken pipe" on Linux).
fn is_closed_stdout(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    message.starts_with("failed printing to stdout") && message.contains("Broken pipe")
}

/// Logs go to standard error, filtered by RUST_LOG (e.g. `RUST_LOG=debug`,
/// `RUST_LOG=valuecard_terminal=trace`); without it, warnings and errors only. Standard
/// output stays for results (and JSON). No secret is ever logged: APDUs show their INS,
/// lengths and status word, HTTP requests their method, URL and status.
fn init_logging() {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(e) => {
            // An unset RUST_LOG is the usual case; a malformed one deserves a word.
            if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
                eprintln!("warning: RUST_LOG is not a valid filter ({e}); logging warnings only");
            }
            EnvFilter::new("warn")
        }
    };
    // The HTTP client dumps the bytes it sends at TRACE, Authorization header (the admin
    // token) and bodies (credentials) included: those never reach the log, whatever RUST_LOG
    // says. Its DEBUG lines (requests with redacted headers) stay available.
    let no_wire_dumps = tracing_subscriber::filter::filter_fn(|meta| {
        let target = meta.target();
        !(*meta.level() == tracing::Level::TRACE
            && (target.starts_with("ureq_proto") || target.starts_with("ureq")))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(no_wire_dumps)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::cli::Cli::command().debug_assert();
    }

    /// Every command and subcommand says what it does and shows how to run it.
    #[test]
    fn every_command_has_help_with_examples() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name()).trim().to_string();
            if command.get_about().is_none() {
                missing.push(format!("`{path}` has no about text"));
            }
            let after = command
                .get_after_help()
                .or(command.get_after_long_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !after.contains("Example") {
                missing.push(format!("`{path}` has no Example(s) section in its help"));
            }
            for sub in command.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::cli::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
