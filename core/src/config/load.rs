//! Reading the file, layering the environment over it, and turning both into [`Config`].

use std::{
    fmt,
    path::{Path, PathBuf},
};

use toml::{Table, Value};

use super::{Config, validate};

/// Environment variables starting with this prefix override keys of the file:
/// `HANDOFF__GATEWAY__LISTEN` sets `[gateway] listen`, `HANDOFF__APPS__0__TOKEN` sets the first
/// app's token.
pub const ENV_PREFIX: &str = "HANDOFF__";

/// A configuration the binaries refuse, with the file, the key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file being read.
    pub file: PathBuf,
    /// The key at fault (`apps[0].agents[2].capacity`), or empty when the file as a whole is.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` of `file`.
    pub fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Reads `path`, applies the `HANDOFF__` overrides found in `env`, and validates the result.
///
/// The environment is an argument so that tests never touch the process's own.
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError::new(path, "", format!("cannot read the file: {err}")))?;
    parse(&text, path, env)
}

/// Like [`load`], for text already in memory; `origin` names it in errors.
pub fn parse(
    text: &str,
    origin: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    // Syntax errors say where, never quoting the line: it may hold a token.
    let table: Table = toml::from_str(text).map_err(|err| {
        let message = match err.span() {
            Some(span) => {
                let (line, column) = position(text, span.start);
                format!("line {line}, column {column}: {}", err.message().trim_end())
            }
            None => err.message().trim_end().to_owned(),
        };
        ConfigError::new(origin, "", message)
    })?;
    let mut root = Value::Table(table);
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    overrides.sort();
    for (name, raw) in &overrides {
        apply_override(&mut root, name, raw)
            .map_err(|message| ConfigError::new(Path::new(name), "", message))?;
    }
    // An error in a value an override set names the variable, not the file.
    let blame = |key: &str| {
        overrides
            .iter()
            .find(|(name, _)| override_key(name) == key)
            .map_or(origin, |(name, _)| Path::new(name.as_str()))
    };
    let config: Config = serde_path_to_error::deserialize(root).map_err(|err| {
        let key = err.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let message = err.into_inner().to_string();
        // toml appends "in `section`", which the key already says.
        let message = message
            .split("\nin `")
            .next()
            .unwrap_or_default()
            .trim_end();
        let message = if is_secret(&key) {
            "invalid value (not shown: it is a secret)"
        } else {
            message
        };
        ConfigError::new(blame(&key), key.as_str(), message)
    })?;
    validate::config(&config)
        .map_err(|(key, message)| ConfigError::new(blame(&key), key.as_str(), message))?;
    Ok(config)
}

/// The line and column (from 1) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Whether the key holds a secret, whose value an error must not show.
fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    matches!(last, "token" | "router_token" | "url" | "secret_key")
}

/// The key an override variable sets, as errors name keys (`apps[0].token`).
fn override_key(name: &str) -> String {
    let mut key = String::new();
    for segment in name[ENV_PREFIX.len()..].split("__") {
        let segment = segment.to_ascii_lowercase();
        if segment.parse::<usize>().is_ok() {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(&segment);
        }
    }
    key
}

/// Sets the key that `name` (`HANDOFF__A__B__0__C`) designates to `raw`.
fn apply_override(root: &mut Value, name: &str, raw: &str) -> Result<(), String> {
    let segments: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if segments.iter().any(String::is_empty) {
        return Err("has an empty segment".to_owned());
    }
    set_path(root, &segments, raw, "")
}

/// Walks `path` down from `node`, creating tables on the way and indexing lists by number.
fn set_path(node: &mut Value, path: &[String], raw: &str, walked: &str) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        *node = override_value(Some(node), raw);
        return Ok(());
    };
    match node {
        Value::Table(table) => {
            let here = if walked.is_empty() {
                head.clone()
            } else {
                format!("{walked}.{head}")
            };
            if rest.is_empty() {
                let value = override_value(table.get(head.as_str()), raw);
                table.insert(head.clone(), value);
                return Ok(());
            }
            let child = table
                .entry(head.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            set_path(child, rest, raw, &here)
        }
        Value::Array(items) => {
            let len = items.len();
            let index: usize = head
                .parse()
                .map_err(|_| format!("{walked} is a list: the next segment must be an index"))?;
            let item = items
                .get_mut(index)
                .ok_or_else(|| format!("{walked} has {len} entries, so no index {index}"))?;
            set_path(item, rest, raw, &format!("{walked}[{index}]"))
        }
        other => Err(format!("{walked} is a {}, not a table", other.type_str())),
    }
}

/// Types an override: text where the file has text, else a TOML literal when `raw` is one.
fn override_value(existing: Option<&Value>, raw: &str) -> Value {
    if matches!(existing, Some(Value::String(_))) {
        return Value::String(raw.to_owned());
    }
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentStatus, Secret};

    const FILE: &str = r#"
        [router]
        listen = "127.0.0.1:50051"
        [gateway]
        listen = "127.0.0.1:8080"
        router_url = "http://127.0.0.1:50051"
        [[apps]]
        sdk_app_id = 1400000001
        token = "change-me"
        fallback_group_id = 6521
        [[apps.groups]]
        id = 6521
        name = "general"
        [[apps.agents]]
        id = "alice@example.com"
        groups = [6521]
        capacity = 3
        status = "available"
    "#;

    fn parse_with(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        parse(text, Path::new("handoff.toml"), env)
    }

    #[test]
    fn the_store_location_is_logged_without_credentials() -> Result<(), ConfigError> {
        let redis = parse_with(
            FILE,
            &[
                (
                    "HANDOFF__ROUTER__STORE__URL",
                    "redis://:hunter2@a:6379,rediss://user:pw@b:6380/0",
                ),
                ("HANDOFF__ROUTER__STORE__CLUSTER", "true"),
            ],
        )?;
        assert_eq!(
            redis.router.store.location(),
            "redis://a:6379,rediss://b:6380/0"
        );
        let file = parse_with(FILE, &[])?;
        assert_eq!(file.router.store.location(), "handoff.redb");
        Ok(())
    }

    #[test]
    fn a_reload_names_the_settings_only_a_restart_applies() -> Result<(), ConfigError> {
        let running = parse_with(FILE, &[])?;
        let same = parse_with(&FILE.replace("capacity = 3", "capacity = 5"), &[])?;
        assert!(
            same.needs_restart(&running).is_empty(),
            "apps reload in place"
        );
        let moved = parse_with(
            FILE,
            &[
                ("HANDOFF__GATEWAY__LISTEN", "127.0.0.1:9090"),
                ("HANDOFF__ROUTER__STORE__URL", "redis://:hunter2@cache:6379"),
                (
                    "HANDOFF__ROUTER__STORE__TLS_CA",
                    "/etc/handoff/redis-ca.pem",
                ),
                ("HANDOFF__GATEWAY__ROUTER_TOKEN", "a-new-token-0123456789"),
            ],
        )?;
        assert_eq!(
            moved.needs_restart(&running),
            vec![
                "router.store.url",
                "router.store.tls_ca",
                "gateway.listen",
                "gateway.router_token"
            ]
        );
        // What a reload applies is not reported.
        let live = parse_with(
            FILE,
            &[
                ("HANDOFF__GATEWAY__MAX_CLOCK_SKEW", "30s"),
                ("HANDOFF__ROUTER__CAPACITY_MARGIN", "5"),
            ],
        )?;
        assert!(live.needs_restart(&running).is_empty());
        Ok(())
    }

    fn error_of(text: &str, env: &[(&str, &str)]) -> String {
        match parse_with(text, env) {
            Ok(_) => panic!("accepted a bad config"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn reads_the_documented_keys() -> Result<(), ConfigError> {
        let config = parse_with(FILE, &[])?;
        assert_eq!(config.gateway.path, "/");
        assert_eq!(config.gateway.router_timeout.get().as_millis(), 1500);
        let app = &config.apps[0];
        assert_eq!(app.sdk_app_id.get(), 1_400_000_001);
        assert_eq!(app.token.as_ref().map(Secret::expose), Some("change-me"));
        assert_eq!(app.agents[0].capacity, 3);
        assert_eq!(app.agents[0].status, AgentStatus::Available);
        assert_eq!(app.target_group_id().map(|g| g.get()), Some(6521));
        Ok(())
    }

    #[test]
    fn environment_overrides_keys_and_list_entries() -> Result<(), ConfigError> {
        let config = parse_with(
            FILE,
            &[
                ("HANDOFF__GATEWAY__LISTEN", "0.0.0.0:9000"),
                ("HANDOFF__GATEWAY__ROUTER_TIMEOUT", "900ms"),
                ("HANDOFF__APPS__0__TOKEN", "from-env"),
                ("HANDOFF__APPS__0__AGENTS__0__CAPACITY", "5"),
                ("UNRELATED", "ignored"),
            ],
        )?;
        assert_eq!(config.gateway.listen.port(), 9000);
        assert_eq!(config.gateway.router_timeout.get().as_millis(), 900);
        assert_eq!(
            config.apps[0].token.as_ref().map(Secret::expose),
            Some("from-env")
        );
        assert_eq!(config.apps[0].agents[0].capacity, 5);
        Ok(())
    }

    #[test]
    fn bad_overrides_name_the_variable() {
        let err = error_of(FILE, &[("HANDOFF__APPS__7__TOKEN", "x")]);
        assert!(
            err.contains("HANDOFF__APPS__7__TOKEN: apps has 1 entries"),
            "{err}"
        );
        let err = error_of(FILE, &[("HANDOFF__APPS__TOKEN", "x")]);
        assert!(err.contains("must be an index"), "{err}");
    }

    #[test]
    fn errors_never_show_a_secret_and_name_the_variable_that_set_a_value() {
        // A token line broken in the file: where, not the line itself.
        let broken = FILE.replace("token = \"change-me\"", "token = \"s3cret-token-value");
        let err = error_of(&broken, &[]);
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("line "), "{err}");
        // A token of the wrong type: the key, not the value.
        let typed = FILE.replace("token = \"change-me\"", "token = 987654321");
        let err = error_of(&typed, &[]);
        assert!(err.contains("apps[0].token"), "{err}");
        assert!(!err.contains("987654321"), "{err}");
        // A bad value from the environment names its variable.
        let err = error_of(FILE, &[("HANDOFF__GATEWAY__ROUTER_TIMEOUT", "5s")]);
        assert!(
            err.starts_with("HANDOFF__GATEWAY__ROUTER_TIMEOUT: gateway.router_timeout: "),
            "{err}"
        );
        let err = error_of(FILE, &[("HANDOFF__APPS__0__TOKEN", "")]);
        assert!(
            err.starts_with("HANDOFF__APPS__0__TOKEN: apps[0].token"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_problem() {
        let cases = [
            (
                FILE.replace("capacity = 3", "capacity = \"three\""),
                "apps[0].agents[0].capacity",
            ),
            (
                FILE.replace("alice@example.com", "alice"),
                "apps[0].agents[0].id",
            ),
            (
                FILE.replace("status = \"available\"", "status = \"busy\""),
                "unknown variant",
            ),
            (
                FILE.replace("token = \"change-me\"", "token = \"\""),
                "apps[0].token",
            ),
            (
                FILE.replace("[router]", "[router]\nlisten_typo = 1"),
                "unknown field `listen_typo`",
            ),
            (
                format!("{FILE}\n[router\n"),
                "line 20, column 8: unclosed table",
            ),
            (
                FILE.replace("http://127.0.0.1:50051", "127.0.0.1:50051"),
                "gateway.router_url",
            ),
            (
                FILE.replace("[gateway]", "[gateway]\nrouter_timeout = \"2s\""),
                "gateway.router_timeout",
            ),
            (
                FILE.replace("[gateway]", "[gateway]\npath = \"/healthz\""),
                "reserved",
            ),
            (
                format!("{FILE}\n[[apps]]\nsdk_app_id = 1400000001"),
                "configured twice",
            ),
            (
                FILE.replace(
                    "fallback_group_id = 6521",
                    "fallback_group_id = 6521\nwrap_up = \"2h\"",
                ),
                "apps[0].wrap_up: must be at most 1h",
            ),
            (
                FILE.replace(
                    "name = \"general\"",
                    "name = \"general\"\nwrap_up = \"61m\"",
                ),
                "apps[0].groups[0].wrap_up",
            ),
            (
                format!("{FILE}\n[[apps.rules]]\nname = \"r\"\ngroup = 6521\nweight = 0"),
                "apps[0].rules[0].weight: must be from 1 to 100",
            ),
            (
                format!(
                    "{FILE}\n[[apps.rules]]\nname = \"r\"\ngroup = 6521\n\
                     overflow_when = {{ free_seats_below = 2 }}"
                ),
                "apps[0].rules[0].overflow_when: the last target has nothing to overflow to",
            ),
            (
                format!(
                    "{FILE}\n[[apps.rules]]\nname = \"r\"\ngroup = 6521\n\
                     overflow = [{{ group = 6521, overflow_when = {{ wait_above = \"2h\" }} }}]"
                ),
                "apps[0].rules[0].overflow[0].overflow_when",
            ),
            (
                format!(
                    "{FILE}\n[[apps.rules]]\nname = \"r\"\ngroup = 6521\n\
                     overflow_when = {{ free_seats_below = 0 }}\noverflow = [{{ group = 6521 }}]"
                ),
                "apps[0].rules[0].overflow_when.free_seats_below: must be at least 1",
            ),
            (
                format!(
                    "{FILE}\n[[apps.rules]]\nname = \"r\"\ngroup = 6521\n\
                     overflow_when = {{}}\noverflow = [{{ group = 6521 }}]"
                ),
                "needs free_seats_below or wait_above",
            ),
            (
                format!(
                    "{FILE}\n[[apps.rules]]\nname = \"r\"\ngroup = 6521\ntiers = [{}]",
                    ["'true'"; 9].join(", ")
                ),
                "apps[0].rules[0].tiers: at most 8 tiers",
            ),
            (
                FILE.replace("name = \"general\"", "name = \"general\"\nheadroom = 10001"),
                "apps[0].groups[0].headroom: must be at most 10000",
            ),
        ];
        for (text, expected) in cases {
            let err = error_of(&text, &[]);
            assert!(err.starts_with("handoff.toml: "), "{err}");
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    /// `[apps.desk]` of [`FILE`]'s app, with `extra` keys, its key given by the environment.
    fn with_desk(extra: &str) -> String {
        format!(
            "{FILE}\n        [apps.desk]\n        api = \"https://adminapisgp.im.qcloud.com\"\n        admin = \"administrator\"\n{extra}\n"
        )
    }

    const DESK_KEY: (&str, &str) = ("HANDOFF__APPS__0__DESK__SECRET_KEY", "5bd2850fff3ecb11");

    #[test]
    fn desk_sync_reads_its_documented_keys_and_its_key_from_the_environment()
    -> Result<(), ConfigError> {
        let text = with_desk(
            "member_status = { \"1\" = \"available\", \"2\" = \"away\" }\nhours = true\n[[apps.rules]]\nname = \"vip\"\nwhen = 'customer.tier == \"vip\"'\ngroup = 9001",
        );
        let config = parse_with(&text, &[DESK_KEY])?;
        let desk = config.apps[0]
            .desk
            .as_ref()
            .ok_or_else(|| ConfigError::new(Path::new("t"), "desk", "absent"))?;
        assert_eq!(desk.secret_key.expose(), "5bd2850fff3ecb11");
        assert_eq!(desk.roster_every.get(), std::time::Duration::from_secs(300));
        assert_eq!(desk.status_every.get(), std::time::Duration::from_secs(15));
        assert_eq!(desk.status_of(2), Some(AgentStatus::Away));
        assert_eq!(desk.status_of(7), None);
        assert!(desk.hours);
        // Group 9001 is Desk's alone: with Desk sync the file need not list it.
        let without = error_of(
            &FILE.replace(
                "fallback_group_id = 6521",
                "fallback_group_id = 6521\ndefault_group_id = 9001",
            ),
            &[],
        );
        assert!(without.contains("apps[0].default_group_id"), "{without}");
        Ok(())
    }

    #[test]
    fn desk_settings_are_refused_by_key_and_the_key_is_never_shown() {
        let cases = [
            (
                with_desk(""),
                &[][..],
                "apps[0].desk: missing field `secret_key`",
            ),
            (
                with_desk("secret_key = \" \""),
                &[][..],
                "apps[0].desk.secret_key",
            ),
            (
                with_desk("").replace("https://adminapisgp", "http://adminapisgp"),
                &[DESK_KEY][..],
                "apps[0].desk.api",
            ),
            (
                with_desk("").replace(
                    "https://adminapisgp.im.qcloud.com",
                    "adminapisgp.im.qcloud.com",
                ),
                &[DESK_KEY][..],
                "apps[0].desk.api",
            ),
            (
                with_desk("").replace("\"administrator\"", "\"\""),
                &[DESK_KEY][..],
                "apps[0].desk.admin",
            ),
            (
                with_desk("roster_every = \"500ms\""),
                &[DESK_KEY][..],
                "apps[0].desk.roster_every",
            ),
            (
                with_desk("status_every = \"0s\""),
                &[DESK_KEY][..],
                "apps[0].desk.status_every",
            ),
            (
                with_desk("timeout = \"5m\""),
                &[DESK_KEY][..],
                "apps[0].desk.timeout",
            ),
            (
                with_desk("member_status = { busy = \"away\" }"),
                &[DESK_KEY][..],
                "apps[0].desk.member_status",
            ),
            (
                with_desk("member_status = { \"1\" = \"resting\" }"),
                &[DESK_KEY][..],
                "unknown variant",
            ),
        ];
        for (text, env, expected) in cases {
            let err = error_of(&text, env);
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
            assert!(!err.contains(DESK_KEY.1), "{err}");
        }
        for loopback in [
            "http://127.0.0.1:9",
            "http://localhost:9/",
            "http://[::1]:9",
        ] {
            let text = with_desk("").replace("https://adminapisgp.im.qcloud.com", loopback);
            assert!(parse_with(&text, &[DESK_KEY]).is_ok(), "{loopback}");
        }
        let err = error_of(&with_desk("secret_key = 5"), &[]);
        assert!(!err.contains("= 5"), "{err}");
    }

    #[test]
    fn an_empty_file_is_a_valid_default() -> Result<(), ConfigError> {
        let config = parse_with("", &[])?;
        assert!(config.apps.is_empty());
        assert_eq!(config.router.listen.port(), 50051);
        Ok(())
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load(Path::new("/nonexistent/handoff.toml"), Vec::new());
        assert!(err.is_err_and(|e| e.to_string().contains("cannot read the file")));
    }

    proptest::proptest! {
        /// Any text is read or refused with a message naming the file; never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Err(err) = parse(&text, Path::new("f.toml"), Vec::new()) {
                proptest::prop_assert!(err.to_string().starts_with("f.toml: "), "{err}");
            }
        }

        /// A well-shaped file with odd values in its keys: refused naming the key (or the
        /// variable that set it), never a panic.
        #[test]
        fn odd_values_are_refused_by_key(
            key in proptest::sample::select(vec![
                "gateway.router_timeout", "gateway.deadline", "gateway.max_body_bytes",
                "gateway.header_timeout", "gateway.max_connections", "router.assignment_ttl",
                "router.max_session", "router.store.timeout", "apps.0.sticky_ttl",
                "apps.0.time_zone", "apps.0.token", "apps.0.agents.0.capacity",
            ]),
            value in proptest::prop_oneof![
                "-?[0-9]{1,20}", "[0-9]{1,6}(ms|s|m|h|d|x)", "\\PC{0,20}",
            ],
        ) {
            let var = format!("HANDOFF__{}", key.replace('.', "__").to_ascii_uppercase());
            let env = vec![(var.clone(), value)];
            if let Err(err) = parse(FILE, Path::new("f.toml"), env) {
                let text = err.to_string();
                proptest::prop_assert!(
                    text.starts_with(&format!("{var}: ")) || text.starts_with("f.toml: "),
                    "{text}"
                );
            }
        }
    }
}
