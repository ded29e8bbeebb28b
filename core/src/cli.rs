//! The command line shared by the three binaries: `[check] --config FILE [--log-format
//! text|json]`.

use std::path::PathBuf;

use crate::telemetry::LogFormat;

/// What a binary was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve with the config file at this path.
    Serve(PathBuf),
    /// Validate the config file at this path and exit.
    Check(PathBuf),
    /// Print usage and exit.
    Help,
    /// Print the version and exit.
    Version,
}

/// What the command line asks for, and how to write logs meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// What to do.
    pub command: Command,
    /// `--log-format` (or `HANDOFF_LOG_FORMAT`); text by default.
    pub log_format: LogFormat,
}

/// Reads `args` (without the program name): `[check] --config FILE [--log-format
/// text|json]`, `--help`, `--version`.
///
/// `HANDOFF_CONFIG` stands in for `--config` when given in `env_config`, and
/// `HANDOFF_LOG_FORMAT` for `--log-format` in `env_log_format`.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env_config: Option<String>,
    env_log_format: Option<String>,
) -> Result<Invocation, String> {
    let mut check = false;
    let mut config = env_config.map(PathBuf::from);
    let mut log_format = env_log_format;
    let mut args = args.into_iter();
    let done = |command| {
        Ok(Invocation {
            command,
            log_format: LogFormat::Text,
        })
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return done(Command::Help),
            "-V" | "--version" => return done(Command::Version),
            "check" => check = true,
            "-c" | "--config" => {
                let path = args.next().ok_or("--config needs a file")?;
                config = Some(PathBuf::from(path));
            }
            "--log-format" => {
                log_format = Some(args.next().ok_or("--log-format needs text or json")?);
            }
            other => {
                if let Some(path) = other.strip_prefix("--config=") {
                    config = Some(PathBuf::from(path));
                } else if let Some(format) = other.strip_prefix("--log-format=") {
                    log_format = Some(format.to_owned());
                } else {
                    return Err(format!("unexpected argument {other:?}"));
                }
            }
        }
    }
    let config = config.ok_or("missing --config FILE (or HANDOFF_CONFIG)")?;
    let log_format = log_format.map_or(Ok(LogFormat::Text), |format| format.parse())?;
    Ok(Invocation {
        command: if check {
            Command::Check(config)
        } else {
            Command::Serve(config)
        },
        log_format,
    })
}

/// Usage text for `program`.
pub fn usage(program: &str, about: &str) -> String {
    let serve = format!("{program} --config FILE [--log-format text|json]");
    let check = format!("{program} check --config FILE");
    let width = serve.len();
    let replay = if program == "handoff" {
        format!(
            "       handoff replay --config NEW.toml --log FILE... [--format text|json] [--html OUT]\n\
             {:width$}          run a decision log again under NEW.toml\n",
            ""
        )
    } else {
        String::new()
    };
    format!(
        "{program}: {about}\n\n\
         usage: {serve}   serve\n       \
         {check:<width$}   validate the config and exit\n\
         {replay}\n\
         HANDOFF_CONFIG may stand in for --config and HANDOFF_LOG_FORMAT for --log-format;\n\
         HANDOFF__SECTION__KEY variables override keys of the file; RUST_LOG sets the log\n\
         filter; the standard OTEL_* variables configure trace export (see README).\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn command(list: &[&str], env_config: Option<&str>) -> Result<Command, String> {
        parse(args(list), env_config.map(str::to_owned), None).map(|i| i.command)
    }

    #[test]
    fn reads_serve_check_and_help() {
        let path = PathBuf::from("a.toml");
        assert_eq!(
            command(&["--config", "a.toml"], None),
            Ok(Command::Serve(path.clone()))
        );
        assert_eq!(
            command(&["--config=a.toml"], None),
            Ok(Command::Serve(path.clone()))
        );
        assert_eq!(
            command(&["check", "-c", "a.toml"], None),
            Ok(Command::Check(path.clone()))
        );
        assert_eq!(command(&[], Some("a.toml")), Ok(Command::Serve(path)));
        assert_eq!(command(&["--help"], None), Ok(Command::Help));
        assert!(command(&[], None).is_err());
        assert!(command(&["--config"], None).is_err());
        assert!(command(&["serve-all"], None).is_err());
    }

    #[test]
    fn reads_the_log_format_from_the_flag_or_the_environment() {
        let format = |list: &[&str], env: Option<&str>| {
            parse(args(list), Some("a.toml".into()), env.map(str::to_owned)).map(|i| i.log_format)
        };
        assert_eq!(format(&[], None), Ok(LogFormat::Text));
        assert_eq!(format(&["--log-format", "json"], None), Ok(LogFormat::Json));
        assert_eq!(format(&["--log-format=json"], None), Ok(LogFormat::Json));
        assert_eq!(format(&[], Some("json")), Ok(LogFormat::Json));
        assert_eq!(
            format(&["--log-format", "text"], Some("json")),
            Ok(LogFormat::Text),
            "the flag wins"
        );
        assert!(format(&["--log-format", "yaml"], None).is_err());
        assert!(format(&["--log-format"], None).is_err());
    }
}

/// Why a binary could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The command line was wrong.
    #[error("{0} (try --help)")]
    Usage(String),
    /// The config file was refused. Its message is the whole story, so it is not also
    /// chained as a source (which would print it twice).
    #[error("invalid config: {0}")]
    Config(crate::config::ConfigError),
}

impl From<crate::config::ConfigError> for StartError {
    fn from(err: crate::config::ConfigError) -> Self {
        StartError::Config(err)
    }
}

/// A config ready to serve, and where it came from (for reloads).
#[derive(Debug)]
pub struct Started {
    /// The loaded, validated config.
    pub config: crate::Config,
    /// The file it was read from.
    pub path: PathBuf,
    /// The environment its overrides came from, for reloading it the same way.
    pub env: Vec<(String, String)>,
    /// How to write logs.
    pub log_format: LogFormat,
}

/// Reads the process's arguments and environment: prints help, the version or a `check`
/// verdict and returns `None`, or returns the config to serve. `compile` is the binary's own
/// check beyond the file's shape (the router compiles rules and schedules); it runs for
/// `check` and before serving.
pub fn start(
    program: &str,
    about: &str,
    compile: impl Fn(&crate::Config, &std::path::Path) -> Result<(), crate::config::ConfigError>,
    audit: impl Fn(&crate::Config) -> Vec<String>,
) -> Result<Option<Started>, StartError> {
    let Invocation {
        command,
        log_format,
    } = parse(
        std::env::args().skip(1),
        std::env::var("HANDOFF_CONFIG").ok(),
        std::env::var("HANDOFF_LOG_FORMAT").ok(),
    )
    .map_err(StartError::Usage)?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    match command {
        Command::Help => {
            print!("{}", usage(program, about));
            Ok(None)
        }
        Command::Version => {
            println!("{program} {}", env!("CARGO_PKG_VERSION"));
            Ok(None)
        }
        Command::Check(path) => {
            let config = crate::config::load(&path, env)?;
            compile(&config, &path)?;
            for warning in audit(&config) {
                eprintln!("{program}: warning: {warning}");
            }
            println!("{}: ok ({} apps)", path.display(), config.apps.len());
            Ok(None)
        }
        Command::Serve(path) => {
            let config = crate::config::load(&path, env.iter().cloned())?;
            compile(&config, &path)?;
            Ok(Some(Started {
                config,
                path,
                env,
                log_format,
            }))
        }
    }
}
