//! `handoff desk --config FILE [--app ID]`: what Tencent Desk holds for each app with
//! `[apps.desk]` (groups, members and their reception limits, each member's raw
//! `MemberStatus` code and live count, the queue) and how it differs from the roster the
//! file gives, so that an operator can fill `member_status` and trust the sync before
//! turning it on. It reads only: nothing is changed in Desk or in handoff.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf, process::ExitCode};

use handoff_core::{
    config::{Config, DeskConfig},
    id::SdkAppId,
};
use handoff_router::{
    desk::{
        api::{DeskError, Endpoint},
        client::{DeskClient, DeskGroup, DeskMember, MemberLive, Reception},
    },
    engine::{App, Catalog, desk::DeskGroup as KnownGroup},
    service::desk_sync::groups_missing,
};

/// What `handoff desk` was asked.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    config: Option<PathBuf>,
    app: Option<u64>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                parsed.config = Some(args.next().ok_or("--config needs a file")?.into());
            }
            "--app" => {
                let id = args.next().ok_or("--app needs an SdkAppId")?;
                parsed.app = Some(
                    id.parse()
                        .map_err(|_| format!("--app {id:?} is not an SdkAppId"))?,
                );
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if parsed.config.is_none() {
        parsed.config = std::env::var("HANDOFF_CONFIG").ok().map(PathBuf::from);
    }
    if parsed.config.is_none() {
        return Err("missing --config FILE".into());
    }
    Ok(parsed)
}

/// Runs `handoff desk` with `args` (after `desk`): the whole process.
pub async fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("handoff desk: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: impl IntoIterator<Item = String>) -> Result<(), String> {
    let args = parse(args)?;
    let path = args.config.unwrap_or_default();
    let config = handoff_core::config::load(&path, std::env::vars()).map_err(|e| e.to_string())?;
    let catalog = Catalog::from_config(&config, &path).map_err(|e| e.to_string())?;
    let apps = synced_apps(&config, &catalog, args.app)?;
    let mut failed = false;
    for (app, desk) in apps {
        match read(&app, &desk).await {
            Ok(read) => print!("{}", report(&app, &desk, &read)),
            Err(err) => {
                println!("app {}: {err}\n", app.id);
                failed = true;
            }
        }
    }
    if failed {
        return Err("Desk could not be read for every app".into());
    }
    Ok(())
}

/// The apps of `catalog` with `[apps.desk]` (only `only`, when given).
fn synced_apps(
    config: &Config,
    catalog: &Catalog,
    only: Option<u64>,
) -> Result<Vec<(std::sync::Arc<App>, DeskConfig)>, String> {
    let apps: Vec<_> = config
        .apps
        .iter()
        .filter(|app| only.is_none_or(|id| app.sdk_app_id.get() == id))
        .filter_map(|app| {
            let desk = app.desk.clone()?;
            Some((catalog.app(app.sdk_app_id)?.clone(), desk))
        })
        .collect();
    if apps.is_empty() {
        return Err(match only {
            Some(id) => format!("app {id} has no [apps.desk] in the config"),
            None => "no app has [apps.desk] in the config".into(),
        });
    }
    Ok(apps)
}

/// Everything `handoff desk` reads of one app.
struct Read {
    groups: Vec<DeskGroup>,
    members: Vec<DeskMember>,
    live: Vec<MemberLive>,
    reception: Option<Reception>,
}

fn client(id: SdkAppId, desk: &DeskConfig) -> Result<DeskClient, DeskError> {
    let endpoint = Endpoint {
        api: desk.api.clone(),
        sdk_app_id: id.get(),
        admin: desk.admin.clone(),
    };
    DeskClient::new(endpoint, desk.secret_key.clone(), desk.timeout.get())
}

async fn read(app: &App, desk: &DeskConfig) -> Result<Read, DeskError> {
    let client = client(app.id, desk)?;
    Ok(Read {
        groups: client.groups().await?,
        members: client.members().await?,
        live: client.realtime().await?,
        // The queue is for the operator's eye only: not every edition may answer it.
        reception: client.reception().await.ok(),
    })
}

/// The report of one app: Desk's groups and members with their codes and counts, then how
/// they differ from the file's roster and rules.
fn report(app: &App, desk: &DeskConfig, read: &Read) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "app {} ({})", app.id, desk.api);
    let _ = writeln!(out, "  groups ({}):", read.groups.len());
    for group in &read.groups {
        let _ = writeln!(
            out,
            "    {:>10}  {:<24} reception limit {}",
            group.id, group.name, group.reception_limit
        );
    }
    let live: BTreeMap<String, &MemberLive> = read
        .live
        .iter()
        .map(|row| (row.mail.to_ascii_lowercase(), row))
        .collect();
    let _ = writeln!(out, "  members ({}):", read.members.len());
    let _ = writeln!(
        out,
        "    {:<32} {:<16} {:<18} {:>5} {:>6} {:>7}  maps to",
        "e-mail", "nick", "groups", "limit", "status", "serving"
    );
    let mut codes: BTreeMap<i64, usize> = BTreeMap::new();
    for member in &read.members {
        let row = live.get(&member.mail.to_ascii_lowercase());
        let code = row.map(|row| row.status);
        if let Some(code) = code {
            *codes.entry(code).or_default() += 1;
        }
        let maps = match code {
            Some(code) => desk
                .status_of(code)
                .map_or("(unmapped)", |status| status.as_str()),
            None => "(no live row)",
        };
        let groups: Vec<String> = member.groups.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "    {:<32} {:<16} {:<18} {:>5} {:>6} {:>7}  {maps}",
            member.mail,
            member.nick_name,
            groups.join(","),
            member.effective_limit,
            code.map_or("-".to_owned(), |code| code.to_string()),
            row.map_or("-".to_owned(), |row| row.serving.to_string()),
        );
    }
    if let Some(reception) = &read.reception {
        let _ = writeln!(
            out,
            "  now: {} queued, {} being transferred, {} served; agents free {}, resting {}, busy {}",
            reception.queued,
            reception.transferring,
            reception.serving,
            reception.free_agents,
            reception.rest_agents,
            reception.busy_agents
        );
    }
    let _ = writeln!(out, "  compared with the file:");
    let mut differences = 0;
    let unmapped: Vec<String> = codes
        .iter()
        .filter(|(code, _)| desk.status_of(**code).is_none())
        .map(|(code, count)| format!("{code} ({count} members)"))
        .collect();
    if !unmapped.is_empty() {
        differences += 1;
        let _ = writeln!(
            out,
            "    status codes member_status does not map (their statuses are left alone): {}",
            unmapped.join(", ")
        );
    }
    let in_desk: std::collections::HashSet<String> = read
        .members
        .iter()
        .map(|member| member.mail.to_ascii_lowercase())
        .collect();
    for agent in app.agents() {
        if !in_desk.contains(&agent.id.as_str().to_ascii_lowercase()) {
            differences += 1;
            let _ = writeln!(
                out,
                "    {} is in the file, not in Desk: once synced, not on the floor",
                agent.id
            );
        }
    }
    for member in &read.members {
        let key = member.mail.to_ascii_lowercase();
        match app.agent_by_key(&key) {
            None => {
                differences += 1;
                let _ = writeln!(
                    out,
                    "    {} is in Desk, not in the file: routed with Desk's groups and limit, no skills or attributes",
                    member.mail
                );
            }
            Some(agent) if agent.capacity != member.effective_limit => {
                differences += 1;
                let _ = writeln!(
                    out,
                    "    {}: the file says capacity {}, Desk's reception limit {} wins",
                    member.mail, agent.capacity, member.effective_limit
                );
            }
            Some(_) => {}
        }
    }
    let known: Vec<KnownGroup> = read
        .groups
        .iter()
        .filter_map(|group| {
            Some(KnownGroup {
                id: handoff_core::id::GroupId::new(group.id).ok()?,
                name: group.name.clone(),
                capacity: group.reception_limit,
            })
        })
        .collect();
    for group in groups_missing(app, &known) {
        differences += 1;
        let _ = writeln!(
            out,
            "    group {group} is named by a rule or the fallback but Desk has no such group"
        );
    }
    if differences == 0 {
        let _ = writeln!(out, "    nothing differs");
    }
    out.push('\n');
    out
}

/// What `handoff check` says of each app's Desk settings when credentials are given: the
/// groups its rules name that Desk lacks, or why Desk cannot be read. Each app's reads are
/// bounded by its `timeout`.
pub async fn audit(config: &Config) -> Vec<String> {
    let Ok(catalog) = Catalog::from_config(config, std::path::Path::new("")) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    let Ok(apps) = synced_apps(config, &catalog, None) else {
        return warnings;
    };
    for (app, desk) in apps {
        let groups = match client(app.id, &desk) {
            Ok(client) => client.groups().await,
            Err(err) => Err(err),
        };
        match groups {
            Ok(groups) => {
                let known: Vec<KnownGroup> = groups
                    .into_iter()
                    .filter_map(|group| {
                        Some(KnownGroup {
                            id: handoff_core::id::GroupId::new(group.id).ok()?,
                            name: group.name,
                            capacity: group.reception_limit,
                        })
                    })
                    .collect();
                for group in groups_missing(&app, &known) {
                    warnings.push(format!(
                        "app {}: group {group} is named by a rule or the fallback, but Desk has no such group",
                        app.id
                    ));
                }
            }
            Err(err) => warnings.push(format!("app {}: Desk cannot be read: {err}", app.id)),
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_arguments() {
        let args = |list: &[&str]| parse(list.iter().map(|s| (*s).to_owned()));
        assert_eq!(
            args(&["--config", "h.toml", "--app", "1400000001"]),
            Ok(Args {
                config: Some("h.toml".into()),
                app: Some(1_400_000_001),
            })
        );
        assert!(args(&["--config", "h.toml", "--app", "x"]).is_err());
        assert!(args(&["--config"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }
}
