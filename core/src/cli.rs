//! The command line shared by the three binaries: `[check] --config FILE`.

use std::path::PathBuf;

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

/// Reads `args` (without the program name): `[check] --config FILE`, `--help`, `--version`.
///
/// `HANDOFF_CONFIG` stands in for `--config` when given in `env_config`.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env_config: Option<String>,
) -> Result<Command, String> {
    let mut check = false;
    let mut config = env_config.map(PathBuf::from);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "check" => check = true,
            "-c" | "--config" => {
                let path = args.next().ok_or("--config needs a file")?;
                config = Some(PathBuf::from(path));
            }
            other => match other.strip_prefix("--config=") {
                Some(path) => config = Some(PathBuf::from(path)),
                None => return Err(format!("unexpected argument {other:?}")),
            },
        }
    }
    let config = config.ok_or("missing --config FILE (or HANDOFF_CONFIG)")?;
    Ok(if check {
        Command::Check(config)
    } else {
        Command::Serve(config)
    })
}

/// Usage text for `program`.
pub fn usage(program: &str, about: &str) -> String {
    format!(
        "{program}: {about}\n\n\
         usage: {program} --config FILE       serve\n       \
         {program} check --config FILE validate the config and exit\n\n\
         HANDOFF_CONFIG may stand in for --config; HANDOFF__SECTION__KEY variables\n\
         override keys of the file; RUST_LOG sets the log filter.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_serve_check_and_help() {
        let path = PathBuf::from("a.toml");
        assert_eq!(
            parse(args(&["--config", "a.toml"]), None),
            Ok(Command::Serve(path.clone()))
        );
        assert_eq!(
            parse(args(&["--config=a.toml"]), None),
            Ok(Command::Serve(path.clone()))
        );
        assert_eq!(
            parse(args(&["check", "-c", "a.toml"]), None),
            Ok(Command::Check(path.clone()))
        );
        assert_eq!(
            parse(args(&[]), Some("a.toml".into())),
            Ok(Command::Serve(path))
        );
        assert_eq!(parse(args(&["--help"]), None), Ok(Command::Help));
        assert!(parse(args(&[]), None).is_err());
        assert!(parse(args(&["--config"]), None).is_err());
        assert!(parse(args(&["serve-all"]), None).is_err());
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
}

/// Reads the process's arguments and environment: prints help, the version or a `check`
/// verdict and returns `None`, or returns the config to serve. `compile` is the binary's own
/// check beyond the file's shape (the router compiles rules and schedules); it runs for
/// `check` and before serving.
pub fn start(
    program: &str,
    about: &str,
    compile: impl Fn(&crate::Config, &std::path::Path) -> Result<(), crate::config::ConfigError>,
) -> Result<Option<Started>, StartError> {
    let command = parse(
        std::env::args().skip(1),
        std::env::var("HANDOFF_CONFIG").ok(),
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
            println!("{}: ok ({} apps)", path.display(), config.apps.len());
            Ok(None)
        }
        Command::Serve(path) => {
            let config = crate::config::load(&path, env.iter().cloned())?;
            compile(&config, &path)?;
            Ok(Some(Started { config, path, env }))
        }
    }
}
