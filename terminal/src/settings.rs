//! Where the terminal's settings come from: the command line, then the environment, then the
//! config file, then the built-in default. Clap handles the first two and the defaults; this
//! fills in what neither the command line nor the environment set from the config file, and
//! remembers where each value came from, for `valuecard config` and for the journal (a bank
//! the user chose wins over the one a journaled withdrawal remembers).

use std::fmt;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::cli::Global;
use crate::cmd::{CliError, Result};

/// The environment variable that names the config file (as `--config` does).
pub const CONFIG_ENV: &str = "VALUECARD_CONFIG";
/// The environment variables for the two readers of `valuecard exchange`.
pub const INITIATOR_ENV: &str = "VALUECARD_INITIATOR";
pub const RESPONDER_ENV: &str = "VALUECARD_RESPONDER";

/// The config file as written. Every key is optional; an unknown one is an error, so that a
/// typo does not silently leave a setting at its default.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub backend: Option<String>,
    pub bank: Option<String>,
    pub center: Option<String>,
    pub arbiter: Option<String>,
    pub reader: Option<String>,
    pub journal: Option<PathBuf>,
    pub initiator: Option<String>,
    pub responder: Option<String>,
}

/// Where one setting's value came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// Nothing set it: the built-in default (or no value at all).
    #[default]
    Default,
    /// The option, e.g. `--backend`.
    CommandLine(&'static str),
    /// The environment variable, e.g. `VALUECARD_BACKEND`.
    Environment(&'static str),
    /// The config file, at this path.
    ConfigFile(PathBuf),
}

impl Source {
    /// A stable name, for JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::CommandLine(_) => "command_line",
            Source::Environment(_) => "environment",
            Source::ConfigFile(_) => "config_file",
        }
    }

    /// The option, the variable or the file.
    pub fn origin(&self) -> Option<String> {
        match self {
            Source::Default => None,
            Source::CommandLine(option) => Some((*option).to_string()),
            Source::Environment(var) => Some((*var).to_string()),
            Source::ConfigFile(path) => Some(path.display().to_string()),
        }
    }

    /// The user set it, one way or another.
    pub fn is_chosen(&self) -> bool {
        *self != Source::Default
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::CommandLine(option) => write!(f, "command line ({option})"),
            Source::Environment(var) => write!(f, "environment ({var})"),
            Source::ConfigFile(path) => write!(f, "config file ({})", path.display()),
        }
    }
}

/// The config file that was looked for, and whether it was there.
#[derive(Clone, Debug, Default)]
pub struct ConfigLocation {
    /// None when there is no place for a default one (neither XDG_CONFIG_HOME nor HOME).
    pub path: Option<PathBuf>,
    /// How the path was chosen.
    pub source: Source,
    /// It existed and was read.
    pub loaded: bool,
}

/// Where each setting came from, and the exchange's two readers (which only `exchange`
/// takes as options).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub config: ConfigLocation,
    pub backend: Source,
    pub bank: Source,
    pub center: Source,
    pub arbiter: Source,
    pub reader: Source,
    pub journal: Source,
    pub initiator: Option<String>,
    pub initiator_source: Source,
    pub responder: Option<String>,
    pub responder_source: Source,
}

/// The default config file: `$XDG_CONFIG_HOME/valuecard/config.toml`, else
/// `~/.config/valuecard/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let config_home =
        absolute("XDG_CONFIG_HOME").or_else(|| absolute("HOME").map(|h| h.join(".config")))?;
    Some(config_home.join("valuecard").join("config.toml"))
}

/// Parses a config file's text; `path` is for the messages.
pub fn parse_config(text: &str, path: &Path) -> Result<ConfigFile> {
    toml::from_str(text).map_err(|e| {
        // toml's message names the line and the column, and lists the known keys for an
        // unknown one.
        let detail = e.to_string();
        CliError::new(format!(
            "the config file {} is not valid: {}",
            path.display(),
            detail.trim_end()
        ))
        .hint("`valuecard config --help` shows the keys, each a quoted string, and an example")
    })
}

/// Reads the config file the options name, or the default one if it exists.
fn load_config(global: &Global, matches: &ArgMatches) -> Result<(ConfigFile, ConfigLocation)> {
    let (path, source) = match (&global.config, matches.value_source("config")) {
        (Some(path), Some(ValueSource::EnvVariable)) => {
            (Some(path.clone()), Source::Environment(CONFIG_ENV))
        }
        (Some(path), _) => (Some(path.clone()), Source::CommandLine("--config")),
        (None, _) => (default_config_path(), Source::Default),
    };
    let mut location = ConfigLocation {
        path: path.clone(),
        source: source.clone(),
        loaded: false,
    };
    let Some(path) = path else {
        return Ok((ConfigFile::default(), location));
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // No default config file is the ordinary case; one the user named must exist.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && source == Source::Default => {
            return Ok((ConfigFile::default(), location));
        }
        Err(e) => {
            let how = match &source {
                Source::Environment(var) => format!("named by {var}"),
                _ => "named by --config".into(),
            };
            let error = CliError::new(format!(
                "cannot read the config file {} ({how}): {e}",
                path.display()
            ));
            return Err(if source == Source::Default {
                error.hint(format!(
                    "fix its permissions, or name another file with --config FILE or {CONFIG_ENV}"
                ))
            } else {
                error.hint(format!(
                    "create it, or drop --config and {CONFIG_ENV} to use the default {}",
                    default_config_path().map_or("(none: HOME is not set)".into(), |p| p
                        .display()
                        .to_string())
                ))
            });
        }
    };
    let mut config = parse_config(&text, &path)?;
    // A relative journal path is relative to the config file, not to wherever the command
    // happens to run; `~/` is the home folder.
    if let Some(journal) = config.journal.take() {
        config.journal = Some(resolve_path(&journal, &path));
    }
    location.loaded = true;
    Ok((config, location))
}

/// `~/x` under HOME; a relative path under the config file's folder.
fn resolve_path(path: &Path, config_file: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    if path.is_absolute() {
        return path.to_path_buf();
    }
    config_file
        .parent()
        .map_or_else(|| path.to_path_buf(), |dir| dir.join(path))
}

/// Where clap took the value of option `id` from; `None` when it was not set (or only by
/// its default).
fn clap_source(
    matches: &ArgMatches,
    id: &str,
    option: &'static str,
    var: &'static str,
) -> Option<Source> {
    match matches.value_source(id) {
        Some(ValueSource::CommandLine) => Some(Source::CommandLine(option)),
        Some(ValueSource::EnvVariable) => Some(Source::Environment(var)),
        _ => None,
    }
}

/// Fills in `global` from the config file where neither the command line nor the
/// environment set a value, and records where every value came from.
pub fn resolve(mut global: Global, matches: &ArgMatches) -> Result<Global> {
    let (config, location) = load_config(&global, matches)?;
    let file = || Source::ConfigFile(location.path.clone().unwrap_or_default());
    let mut sources = Sources {
        config: location.clone(),
        ..Sources::default()
    };

    // Each setting: the command line or the environment (clap), else the config file, else
    // the default.
    macro_rules! setting {
        ($field:ident, $option:literal, $var:literal, $wrap:expr) => {
            sources.$field = match clap_source(matches, stringify!($field), $option, $var) {
                Some(source) => source,
                None => match config.$field.clone() {
                    Some(value) => {
                        global.$field = $wrap(value);
                        file()
                    }
                    None => Source::Default,
                },
            };
        };
    }
    setting!(backend, "--backend", "VALUECARD_BACKEND", |v| v);
    setting!(bank, "--bank", "VALUECARD_BANK", Some);
    setting!(center, "--center", "VALUECARD_CENTER", Some);
    setting!(arbiter, "--arbiter", "VALUECARD_ARBITER", Some);
    setting!(journal, "--journal", "VALUECARD_JOURNAL", Some);
    // --card-state is never in the environment nor in the file: a reader that is yields to
    // it, and only a reader on the command line beside it is a mistake.
    if global.card_state.is_some() {
        match matches.value_source("reader") {
            Some(ValueSource::CommandLine) => {
                return Err(CliError::new(
                    "--reader and --card-state both choose the card: pass one of them",
                ));
            }
            _ => global.reader = None,
        }
    } else {
        setting!(reader, "--reader", "VALUECARD_READER", Some);
    }

    // The exchange's readers: its options are read by `exchange` itself, which lets these
    // yield to them.
    let exchange_reader = |var: &'static str, from_file: &Option<String>| match std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(value) => (Some(value), Source::Environment(var)),
        None => match from_file {
            Some(value) => (Some(value.clone()), file()),
            None => (None, Source::Default),
        },
    };
    (sources.initiator, sources.initiator_source) =
        exchange_reader(INITIATOR_ENV, &config.initiator);
    (sources.responder, sources.responder_source) =
        exchange_reader(RESPONDER_ENV, &config.responder);

    global.sources = sources;
    Ok(global)
}

/// The service addresses in effect, checked: each an http or https URL. Only the commands
/// that talk to a service check them, so that a bad one does not stop `valuecard readers`
/// or `valuecard config`.
pub fn check_urls(global: &Global) -> Result<()> {
    let sources = &global.sources;
    for (key, value, source) in [
        ("backend", Some(&global.backend), &sources.backend),
        ("bank", global.bank.as_ref(), &sources.bank),
        ("center", global.center.as_ref(), &sources.center),
        ("arbiter", global.arbiter.as_ref(), &sources.arbiter),
    ] {
        if let Some(value) = value {
            check_url(key, value, source)?;
        }
    }
    Ok(())
}

/// A service address must be an http or https URL: without its scheme the HTTP client
/// fails with a message that reads as if the service were down.
fn check_url(key: &str, value: &str, source: &Source) -> Result<()> {
    let value = value.trim();
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    if rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
        return Ok(());
    }
    let example = if value.contains("://") || value.is_empty() {
        "http://127.0.0.1:8640".to_string()
    } else {
        format!("http://{value}")
    };
    Err(CliError::new(format!(
        "the {key} address {value:?}, from the {source}, is not an http:// or https:// URL"
    ))
    .hint(format!("write it with its scheme, e.g. {example}"))
    .code(2))
}

/// One reader of `valuecard exchange`: the option, else the environment or the config file
/// unless the side runs in-process (`--initiator-state`), which they yield to.
pub fn exchange_reader(
    option: Option<String>,
    state: Option<&Path>,
    configured: &Option<String>,
) -> Option<String> {
    match (option, state) {
        (Some(reader), _) => Some(reader),
        (None, Some(_)) => None,
        (None, None) => configured.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_parses() {
        let config = parse_config(
            "backend = \"http://bank.example:8640\"\nreader = \"Virtual PCD 00 00\"\njournal = \"j.json\"\ninitiator = \"0\"\nresponder = \"1\"\n",
            Path::new("c.toml"),
        )
        .expect("parses");
        assert_eq!(config.backend.as_deref(), Some("http://bank.example:8640"));
        assert_eq!(config.initiator.as_deref(), Some("0"));
        assert_eq!(config.bank, None);
    }

    #[test]
    fn the_sample_in_the_help_parses_with_every_key() {
        let config = parse_config(crate::cli::sample_config!(), Path::new("help")).expect("parses");
        let ConfigFile {
            backend,
            bank,
            center,
            arbiter,
            reader,
            journal,
            initiator,
            responder,
        } = config;
        for key in [backend, bank, center, arbiter, reader, initiator, responder] {
            assert!(key.is_some());
        }
        assert!(journal.is_some());
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_refused_with_the_place() {
        let unknown =
            parse_config("backnd = \"x\"\n", Path::new("/etc/v.toml")).expect_err("an unknown key");
        assert!(
            unknown.message.contains("/etc/v.toml"),
            "{}",
            unknown.message
        );
        assert!(unknown.message.contains("backnd"), "{}", unknown.message);
        let bad = parse_config("backend = http://x\n", Path::new("v.toml")).expect_err("bad TOML");
        assert!(bad.message.contains("line 1"), "{}", bad.message);
        let wrong_type = parse_config("reader = 0\n", Path::new("v.toml")).expect_err("a number");
        assert!(
            wrong_type.message.contains("reader"),
            "{}",
            wrong_type.message
        );
    }

    #[test]
    fn service_addresses_need_their_scheme() {
        let from = Source::CommandLine("--backend");
        assert!(check_url("backend", "http://127.0.0.1:8640", &from).is_ok());
        assert!(check_url("backend", "https://bank.example/", &from).is_ok());
        let error = check_url("backend", "localhost:8640", &from).expect_err("no scheme");
        assert_eq!(
            error.hint.as_deref(),
            Some("write it with its scheme, e.g. http://localhost:8640")
        );
        assert!(check_url("bank", "ftp://x", &from).is_err());
        assert!(check_url("bank", "http://", &from).is_err());
    }

    #[test]
    fn relative_journals_live_beside_the_config_file() {
        let file = Path::new("/etc/valuecard/config.toml");
        assert_eq!(
            resolve_path(Path::new("journal.json"), file),
            PathBuf::from("/etc/valuecard/journal.json")
        );
        assert_eq!(
            resolve_path(Path::new("/var/j.json"), file),
            PathBuf::from("/var/j.json")
        );
    }

    #[test]
    fn an_in_process_side_ignores_the_configured_reader() {
        let configured = Some("0".to_string());
        assert_eq!(
            exchange_reader(None, None, &configured).as_deref(),
            Some("0")
        );
        assert_eq!(
            exchange_reader(Some("1".into()), None, &configured).as_deref(),
            Some("1")
        );
        assert_eq!(
            exchange_reader(None, Some(Path::new("a.state")), &configured),
            None
        );
    }
}
