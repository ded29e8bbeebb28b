//! The console's pages, as maud templates: everything escaped, nothing fetched from
//! elsewhere, readable without JavaScript (htmx only refreshes what is already there).

use std::{sync::Arc, time::SystemTime};

use handoff_core::{
    config::AgentStatus,
    id::{GroupId, SdkAppId},
};
use maud::{DOCTYPE, Markup, html};

use super::{AgentsQuery, ExplainQuery, Floor, PAGE, Viewer};
use crate::{
    decision_log::Entry,
    engine::{App, RuleOutcome, TargetOutcome, clock_time},
    service::{AgentListing, Explanation, Fed, Status},
};

/// Every page's frame: the navigation, the app chooser, who is signed in.
fn page(
    viewer: Option<&Viewer>,
    apps: &[Arc<App>],
    app: Option<SdkAppId>,
    title: &str,
    body: Markup,
) -> Markup {
    let query = app.map(|id| format!("?app={id}")).unwrap_or_default();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx's own indicator styles would be an inline style the CSP refuses.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false}"#;
                title { (title) " · handoff" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/htmx.min.js" defer {}
                script src="/assets/sse.min.js" defer {}
                script src="/assets/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to the page" }
                header {
                    nav aria-label="Console" {
                        strong { "handoff" }
                        a href={ "/floor" (query) } { "Floor" }
                        a href={ "/agents" (query) } { "Agents" }
                        a href={ "/decisions" (query) } { "Decisions" }
                        a href={ "/sessions" (query) } { "Sessions" }
                        a href={ "/whatif" (query) } { "What if" }
                        a href={ "/explain" (query) } { "Explain" }
                        a href={ "/health" } { "Config and health" }
                        a href={ "/wallboard" (query) } { "Wallboard" }
                    }
                    @if apps.len() > 1 {
                        form method="get" class="apps" {
                            label for="app" { "App" }
                            select id="app" name="app" {
                                @for other in apps {
                                    option value=(other.id) selected[Some(other.id) == app] { (other.id) }
                                }
                            }
                            button type="submit" { "Show" }
                        }
                    }
                    @if let Some(viewer) = viewer {
                        form method="post" action="/signout" class="who" {
                            span { "Signed in as " strong { (viewer.name) } @if !viewer.manage { " (read-only)" } }
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

fn status_name(status: AgentStatus) -> &'static str {
    status.as_str()
}

fn ago(now: SystemTime, at: Option<SystemTime>) -> String {
    match at {
        None => "never".to_owned(),
        Some(at) => match now.duration_since(at) {
            Ok(age) if age.as_secs() < 120 => format!("{}s ago", age.as_secs()),
            Ok(age) if age.as_secs() < 7200 => format!("{}m ago", age.as_secs() / 60),
            Ok(age) => format!("{}h ago", age.as_secs() / 3600),
            Err(_) => clock_time(at),
        },
    }
}

/// Until when `agent` wraps up, if it does now (by its groups' or the app's wrap-up).
fn wrapping_until(app: &App, agent: &AgentListing, now: SystemTime) -> Option<SystemTime> {
    let finished = agent.load.last_finished?;
    let longest = agent
        .agent
        .groups
        .iter()
        .filter_map(|id| app.group(*id))
        .filter_map(|group| group.wrap_up)
        .max()
        .unwrap_or(app.wrap_up);
    let until = finished + longest;
    (!longest.is_zero() && until > now).then_some(until)
}

/// The floor: each group's counts, for the page and its refreshes.
pub(super) fn floor_body(floor: &Floor) -> Markup {
    let app = &floor.app;
    // The file's groups by name, then Desk's the file does not name.
    let mut groups: Vec<(GroupId, String)> = app
        .groups()
        .iter()
        .map(|group| (group.id, group.name.clone()))
        .collect();
    for listed in &floor.groups {
        if !groups.iter().any(|(id, _)| *id == listed.id) {
            groups.push((listed.id, format!("group {}", listed.id)));
        }
    }
    let (assigned, fallbacks) = floor.recent;
    html! {
        p class="recent" {
            "Last " (crate::service::RECENT_MINUTES) " minutes: "
            strong data-count="assigned" { (assigned) } " assigned, "
            strong data-count="fallbacks" class=[(fallbacks > 0).then_some("warn")] { (fallbacks) } " fallbacks"
            @if let Some(desk) = &floor.desk {
                "; Desk sync: roster " (ago(floor.now, desk.last_roster)) ", status " (ago(floor.now, desk.last_status))
                @if let Some(queued) = desk.queued { "; Tencent's queue: " strong data-count="queued" { (queued) } }
                @if desk.syncing { " (this router syncs)" } @else { " (another replica syncs)" }
                @if let Some(error) = &desk.error { span class="error" { " — " (error) } }
            }
        }
        table class="floor" {
            caption { "App " (app.id) ", " (clock_time(floor.now)) }
            thead { tr {
                th scope="col" { "Group" }
                th scope="col" { "Available" }
                th scope="col" { "Away" }
                th scope="col" { "Offline" }
                th scope="col" { "Parked" }
                th scope="col" { "Wrapping up" }
                th scope="col" { "Seats used / capacity" }
                th scope="col" { "Provisional / confirmed" }
                th scope="col" { "Free seats" }
                th scope="col" { "Estimated wait" }
            } }
            tbody {
                @for (id, name) in &groups {
                    @let members: Vec<&AgentListing> = floor.agents.iter().filter(|a| a.agent.groups.contains(id)).collect();
                    @let count = |status: AgentStatus| members.iter().filter(|a| a.status == status).count();
                    @let used: u32 = members.iter().map(|a| a.load.active).sum();
                    @let capacity: u32 = members.iter().map(|a| a.agent.capacity).sum();
                    @let confirmed: u32 = members.iter().map(|a| a.load.confirmed).sum();
                    @let parked = members.iter().filter(|a| a.parked.is_some()).count();
                    @let wrapping = members.iter().filter(|a| wrapping_until(app, a, floor.now).is_some()).count();
                    @let listed = floor.groups.iter().find(|g| g.id == *id);
                    tr class=[(used >= capacity && capacity > 0).then_some("full")] {
                        th scope="row" { (name) " " span class="muted" { "(" (id) ")" } }
                        td data-count="available" { (count(AgentStatus::Available)) }
                        td { (count(AgentStatus::Away)) }
                        td { (count(AgentStatus::Offline)) }
                        td class=[(parked > 0).then_some("warn")] { (parked) }
                        td { (wrapping) }
                        td data-count="seats" { (used) " / " (capacity) }
                        td { (used.saturating_sub(confirmed)) " / " (confirmed) }
                        td { (listed.map_or(0, |g| g.free_seats)) }
                        td { (listed.and_then(|g| g.estimated_wait).map_or_else(|| "—".to_owned(), |w| format!("{}s", w.as_secs()))) }
                    }
                }
            }
        }
    }
}

pub(super) fn floor(viewer: &Viewer, apps: &[Arc<App>], floor: &Floor) -> Markup {
    let id = floor.app.id;
    page(
        Some(viewer),
        apps,
        Some(id),
        "Floor",
        html! {
            h1 { "Floor" }
            p class="muted" { "Refreshes itself every second; " a href={ "/agents?app=" (id) } { "every agent" } " is on the agents page." }
            div id="floor" hx-get={ "/floor/live?app=" (id) } hx-trigger="every 1s" hx-swap="innerHTML" {
                (floor_body(floor))
            }
            noscript { p { "Without JavaScript, reload the page to refresh it." } }
        },
    )
}

fn sort_key(sort: &str, agent: &AgentListing) -> (u64, String) {
    let load = u64::from(agent.load.active) * 10_000 / u64::from(agent.agent.capacity.max(1));
    match sort {
        "load" => (u64::MAX - load, agent.agent.id.to_string()),
        "status" => (agent.status as u64, agent.agent.id.to_string()),
        "idle" => (
            agent
                .load
                .last_assigned
                .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
            agent.agent.id.to_string(),
        ),
        _ => (0, agent.agent.id.to_string()),
    }
}

pub(super) fn agents(
    viewer: &Viewer,
    apps: &[Arc<App>],
    floor: &Floor,
    query: &AgentsQuery,
) -> Markup {
    let app = &floor.app;
    let needle = query.q.trim().to_lowercase();
    let mut rows: Vec<&AgentListing> = floor
        .agents
        .iter()
        .filter(|a| {
            needle.is_empty()
                || a.agent.id.as_str().to_lowercase().contains(&needle)
                || a.agent
                    .name
                    .as_deref()
                    .is_some_and(|n| n.to_lowercase().contains(&needle))
                || a.agent.groups.iter().any(|g| g.to_string() == needle)
        })
        .filter(|a| match query.status.as_str() {
            "available" | "away" | "offline" => status_name(a.status) == query.status,
            "parked" => a.parked.is_some(),
            _ => true,
        })
        .collect();
    rows.sort_by_key(|a| sort_key(&query.sort, a));
    let total = rows.len();
    let pages = total.div_ceil(PAGE).max(1);
    let page_no = query.page.min(pages - 1);
    let shown = rows.iter().skip(page_no * PAGE).take(PAGE);
    let link = |page: usize| {
        format!(
            "/agents?app={}&q={}&status={}&sort={}&page={page}",
            app.id,
            form_urlencoded::byte_serialize(query.q.as_bytes()).collect::<String>(),
            query.status,
            query.sort
        )
    };
    page(
        Some(viewer),
        apps,
        Some(app.id),
        "Agents",
        html! {
            h1 { "Agents" }
            @if !query.done.is_empty() { p class="done" role="status" { (query.done) } }
            form method="get" class="filters" {
                input type="hidden" name="app" value=(app.id);
                label { "Find " input type="search" name="q" value=(query.q) placeholder="id, name or group"; }
                label { "Status "
                    select name="status" {
                        @for (value, label) in [("", "any"), ("available", "available"), ("away", "away"), ("offline", "offline"), ("parked", "parked")] {
                            option value=(value) selected[query.status == value] { (label) }
                        }
                    }
                }
                label { "Sort by "
                    select name="sort" {
                        @for (value, label) in [("", "id"), ("load", "load, highest first"), ("status", "status"), ("idle", "idle longest first")] {
                            option value=(value) selected[query.sort == value] { (label) }
                        }
                    }
                }
                button type="submit" { "Apply" }
            }
            p class="muted" { (total) " agents; page " (page_no + 1) " of " (pages) }
            table class="agents" {
                thead { tr {
                    th scope="col" { "Agent" } th scope="col" { "Groups" } th scope="col" { "Status" }
                    th scope="col" { "Load" } th scope="col" { "On shift" } th scope="col" { "Last assigned" }
                    th scope="col" { "Wrap-up / park" } th scope="col" { "Fair share" }
                    @if viewer.manage { th scope="col" { "Set status" } }
                } }
                tbody {
                    @for agent in shown {
                        @let full = agent.load.active >= agent.agent.capacity;
                        tr id={ "agent-" (agent.agent.id) } class=[if agent.parked.is_some() { Some("parked") } else if full { Some("full") } else { None }] {
                            th scope="row" {
                                (agent.agent.id)
                                @if let Some(name) = &agent.agent.name { br; span class="muted" { (name) } }
                            }
                            td { @for (n, group) in agent.agent.groups.iter().enumerate() { @if n > 0 { ", " } (group) } }
                            td data-status=(status_name(agent.status)) { (status_name(agent.status)) br; span class="muted" { "by " (format!("{:?}", agent.status_source).to_lowercase()) @if let Some(since) = agent.status_since { ", " (ago(floor.now, Some(since))) } } }
                            td { (agent.load.active) " / " (agent.agent.capacity)
                                @if agent.load.active > 0 { br; span class="muted" { (agent.load.active.saturating_sub(agent.load.confirmed)) " provisional" @if agent.load.weighted > 0 { ", " (agent.load.weighted) " weighted" } } } }
                            td { @if agent.on_shift { "yes" } @else { "no" } }
                            td { (ago(floor.now, agent.load.last_assigned)) }
                            td {
                                @if let Some((missed, until)) = agent.parked { "parked after " (missed) " missed offers, until " (clock_time(until)) }
                                @else if let Some(until) = wrapping_until(app, agent, floor.now) { "wrap-up until " (clock_time(until)) }
                                @else if agent.missed > 0 { (agent.missed) " missed in a row" }
                            }
                            td { @if app.fair_share.is_some() { (agent.fair_share_taken) " of " (app.fair_share.map_or(0, |(n, _)| n)) } }
                            @if viewer.manage {
                                td {
                                    form method="post" action="/agents/status" class="inline" {
                                        input type="hidden" name="app" value=(app.id);
                                        input type="hidden" name="agent" value=(agent.agent.id);
                                        input type="hidden" name="csrf" value=(viewer.csrf);
                                        @for status in [AgentStatus::Available, AgentStatus::Away, AgentStatus::Offline] {
                                            // With Desk sync an agent signs out of Desk themselves.
                                            @if (status != agent.status || (status == AgentStatus::Available && agent.parked.is_some()))
                                                && !(status == AgentStatus::Offline && app.desk_sync) {
                                                button type="submit" name="status" value=(status_name(status)) aria-label={ "Set " (agent.agent.id) " " (status_name(status)) } {
                                                    @if status == AgentStatus::Available && agent.parked.is_some() { "unpark" } @else { (status_name(status)) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            nav aria-label="Pages" class="pages" {
                @if page_no > 0 { a href=(link(page_no - 1)) { "Previous" } }
                @if page_no + 1 < pages { a href=(link(page_no + 1)) { "Next" } }
            }
        },
    )
}

pub(super) fn decisions(viewer: &Viewer, apps: &[Arc<App>], app: &App) -> Markup {
    page(
        Some(viewer),
        apps,
        Some(app.id),
        "Decisions",
        html! {
            h1 { "Decisions" }
            p class="muted" { "Every decision and state change of app " (app.id) " as it happens, newest first." }
            div hx-ext="sse" sse-connect={ "/decisions/stream?app=" (app.id) } {
                table class="tail" {
                    thead { tr {
                        th scope="col" { "Time" } th scope="col" { "What" } th scope="col" { "Session" }
                        th scope="col" { "Customer" } th scope="col" { "Rule" } th scope="col" { "Answered" }
                        th scope="col" { "Outcome" } th scope="col" { "Store time" }
                    } }
                    tbody id="tail" sse-swap="entry" hx-swap="afterbegin" {}
                }
            }
            noscript { p { "The live tail needs JavaScript." } }
        },
    )
}

/// One row of the live tail for `fed`, if it is of `app` (states are not shown).
pub(super) fn feed_row(fed: &Fed, app: SdkAppId) -> Option<String> {
    let markup = match &fed.entry {
        Entry::Decision(decided) if decided.app == app => {
            // Explained as of the decision's time (clock rules, hours and shifts then; loads
            // as they are now).
            let explain = format!(
                "/explain?app={}&customer={}&at={}",
                decided.app,
                form_urlencoded::byte_serialize(decided.customer.as_str().as_bytes())
                    .collect::<String>(),
                clock_time(crate::store::record::from_ms(decided.at_ms))
            );
            html! {
                tr class=[decided.fallback.then_some("fallback")] {
                    td { (clock_time(crate::store::record::from_ms(decided.at_ms))) }
                    td { "decision" }
                    td { (decided.session) }
                    td { a href=(explain) title="Explain how this customer would be routed now" { (decided.customer) } }
                    td { (decided.rule) @if let Some(strategy) = decided.strategy { br; span class="muted" { (strategy.as_str()) } } }
                    td { @for (n, agent) in decided.agents.iter().enumerate() { @if n > 0 { ", " } (agent) } @if let Some(group) = decided.group { br; span class="muted" { "group " (group) } } }
                    td { @if decided.replayed { "replayed" } @else if decided.fallback { "fallback" } @else if let Some(agent) = &decided.reserved { "reserved " (agent) } @else { "group alone" }
                        details { summary { "why" } p { (decided.reason) } } }
                    td { @if let Some(micros) = fed.micros { (micros) " µs" } }
                }
            }
        }
        Entry::Decision(_) | Entry::State { .. } => return None,
        other => {
            let value = serde_json::to_value(other).ok()?;
            if value.get("app").and_then(serde_json::Value::as_u64) != Some(app.get()) {
                return None;
            }
            let text = |key: &str| {
                value
                    .get(key)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let at = value
                .get("at_ms")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or_default();
            let kind = text("kind").replace('_', " ");
            let what = [text("event"), text("status")]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            html! {
                tr class="change" {
                    td { (clock_time(crate::store::record::from_ms(at))) }
                    td { (kind) @if !what.is_empty() { ": " (what) } }
                    td { (text("session")) }
                    td { (text("customer")) }
                    td {}
                    td { (text("agent")) }
                    td { (text("outcome")) @let by = text("by"); @if !by.is_empty() { br; span class="muted" { "by " (by) } } }
                    td {}
                }
            }
        }
    };
    Some(markup.into_string())
}

pub(super) fn lagged_row(missed: u64) -> String {
    html! { tr class="lagged" { td colspan="8" { (missed) " entries went by too fast to show" } } }
        .into_string()
}

pub(super) fn explain(
    viewer: &Viewer,
    apps: &[Arc<App>],
    query: &ExplainQuery,
    outcome: Option<Result<Explanation, String>>,
) -> Markup {
    let app = query.app.or_else(|| apps.first().map(|a| a.id.get()));
    page(
        Some(viewer),
        apps,
        app.and_then(|id| SdkAppId::new(id).ok()),
        "Explain",
        html! {
            h1 { "Explain a handoff" }
            form method="get" class="explain" {
                @if let Some(app) = app { input type="hidden" name="app" value=(app); }
                label { "Customer (ClientUserId) " input name="customer" required value=(query.customer); }
                label { "Platform " input name="platform" value=(query.platform) placeholder="web, ios, android…"; }
                label { "Attributes, one key=value a line " textarea name="attributes" rows="3" { (query.attributes) } }
                label { "At (RFC 3339; now when empty) " input name="at" value=(query.at) placeholder="2026-12-03T10:00:00Z"; }
                button type="submit" { "Explain" }
            }
            @match outcome {
                None => {}
                Some(Err(error)) => p class="error" role="alert" { (error) },
                Some(Ok(explanation)) => (explanation_view(&explanation)),
            }
        },
    )
}

fn explanation_view(explanation: &Explanation) -> Markup {
    let decision = &explanation.decision;
    let answer = &explanation.answer;
    html! {
        section class="answer" aria-label="Answer" {
            h2 { "Answer" }
            p { "Rule " strong { (decision.rule) } ": " (answer.reason) }
            p { "AgentIdList: " @for (n, agent) in answer.agents.iter().enumerate() { @if n > 0 { ", " } code { (agent) } }
                @if answer.agents.is_empty() { "none" }
                "; AgentGroupId: " (answer.group.map_or_else(|| "none".to_owned(), |g| g.to_string())) }
        }
        h2 { "Rules tried" }
        ol { @for rule in &decision.rules { li { (rule.rule) ": " (match &rule.outcome {
            RuleOutcome::Matched => "matched".to_owned(),
            RuleOutcome::NotMatched => "did not match".to_owned(),
            RuleOutcome::Failed(error) => format!("failed: {error}"),
        }) } } }
        @for target in &decision.targets {
            section class="target" {
                h2 { (target.label) ": " (target.group.map_or_else(|| "all agents".to_owned(), |g| format!("group {g}"))) ", " (target.strategy.as_str()) }
                p { (match target.outcome {
                    TargetOutcome::Chosen => "answered",
                    TargetOutcome::Closed => "closed",
                    TargetOutcome::NoEligible => "nobody eligible",
                    TargetOutcome::Overflowed => "overflowed",
                }) "; " (target.eligible) " of " (target.members) " eligible; " (target.free_seats) " free seats"
                    @if let Some(why) = &target.overflow { "; " (why) } }
                @if !target.excluded.is_empty() {
                    table { caption { "Left out" } thead { tr { th scope="col" { "Agent" } th scope="col" { "Why" } } }
                        tbody { @for left in &target.excluded { tr { td { (left.agent) } td data-reason=(left.reason.label()) { (left.reason) } } } } }
                }
            }
        }
        @if !decision.ranked.is_empty() {
            table class="candidates" { caption { "Candidates, best first" }
                thead { tr { th scope="col" { "Agent" } th scope="col" { "Score" } th scope="col" { "Load" } th scope="col" { "Tier" } th scope="col" { "Sticky" } } }
                tbody { @for candidate in &decision.ranked { tr {
                    td { (candidate.agent) } td { (format!("{:.3}", candidate.score)) } td { (candidate.active) " / " (candidate.capacity) }
                    td { (candidate.tier) } td { @if let Some(sticky) = candidate.sticky { (format!("{sticky:?}").to_lowercase()) } }
                } } }
            }
        }
    }
}

pub(super) fn health(viewer: &Viewer, apps: &[Arc<App>], status: &Status) -> Markup {
    page(
        Some(viewer),
        apps,
        apps.first().map(|a| a.id),
        "Config and health",
        html! {
            h1 { "Config and health" }
            dl {
                dt { "Config loaded" } dd { (clock_time(status.config.loaded)) }
                dt { "Last refused reload" } dd { @match &status.config.last_refused {
                    Some((at, error)) => { (clock_time(*at)) ": " code { (error) } }
                    None => "none since the start",
                } }
                dt { "Store" } dd { @match &status.store_error { Some(error) => span class="error" { (error) }, None => "answers" } }
                dt { "Apps" } dd { @for app in apps { (app.id) " (version " (app.version()) ") " } }
            }
            h2 { "Lint warnings" }
            @if status.config.warnings.is_empty() { p { "none" } }
            ul { @for (key, problem) in &status.config.warnings { li { code { (key) } ": " (problem) } } }
            @if !status.desk.is_empty() {
                h2 { "Desk sync" }
                table { thead { tr { th scope="col" { "App" } th scope="col" { "Syncing here" } th scope="col" { "Last roster" } th scope="col" { "Last status" } th scope="col" { "Error" } } }
                    tbody { @for (app, desk) in &status.desk { tr {
                        td { (app) } td { @if desk.syncing { "yes" } @else { "no" } }
                        td { (desk.last_roster.map_or_else(|| "never".to_owned(), clock_time)) }
                        td { (desk.last_status.map_or_else(|| "never".to_owned(), clock_time)) }
                        td { (desk.error.clone().unwrap_or_default()) }
                    } } }
                }
            }
        },
    )
}

pub(super) fn wallboard(floor: &Floor) -> Markup {
    let id = floor.app.id;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Wallboard · handoff" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/htmx.min.js" defer {}
                noscript { meta http-equiv="refresh" content="5"; }
            }
            body class="wallboard" {
                main hx-get={ "/floor/live?app=" (id) } hx-trigger="every 2s" hx-swap="innerHTML" {
                    (floor_body(floor))
                }
            }
        }
    }
}

pub(super) fn signin(error: Option<&str>) -> Markup {
    page(
        None,
        &[],
        None,
        "Sign in",
        html! {
            h1 { "Sign in" }
            p { "Sign in with a router token (" code { "[router.auth]" } "). It stays on the server; the browser keeps a session cookie." }
            @if let Some(error) = error { p class="error" role="alert" { (error) } }
            form method="post" action="/signin" {
                label for="token" { "Router token" }
                input id="token" name="token" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The decision log's entries of a session or customer.
pub(super) fn search(
    viewer: &Viewer,
    apps: &[Arc<App>],
    app: SdkAppId,
    q: &str,
    found: Result<Vec<String>, String>,
) -> Markup {
    page(
        Some(viewer),
        apps,
        Some(app),
        "Search",
        html! {
            h1 { "Decision log: " (q) }
            form method="get" action="/decisions/search" class="filters" {
                input type="hidden" name="app" value=(app);
                label { "Session or customer " input type="search" name="q" value=(q) required; }
                button type="submit" { "Search" }
            }
            @match found {
                Err(error) => p class="error" role="alert" { (error) },
                Ok(rows) => {
                    p class="muted" { (rows.len()) " entries, newest first (at most " (super::FOUND) ")" }
                    table class="tail" {
                        thead { tr {
                            th scope="col" { "Time" } th scope="col" { "What" } th scope="col" { "Session" }
                            th scope="col" { "Customer" } th scope="col" { "Rule" } th scope="col" { "Answered" }
                            th scope="col" { "Outcome" } th scope="col" { "Store time" }
                        } }
                        tbody { @for row in &rows { (maud::PreEscaped(row)) } }
                    }
                }
            }
        },
    )
}

/// The sessions holding seats, each with its release.
pub(super) fn sessions(
    viewer: &Viewer,
    apps: &[Arc<App>],
    app: SdkAppId,
    sessions: &[crate::engine::LiveSession],
    done: &str,
    now: SystemTime,
) -> Markup {
    page(
        Some(viewer),
        apps,
        Some(app),
        "Sessions",
        html! {
            h1 { "Sessions holding seats" }
            @if !done.is_empty() { p class="done" role="status" { (done) } }
            p class="muted" { (sessions.len()) " sessions. A seat stuck on a session that is over (its end never reported) can be released here." }
            table class="sessions" {
                thead { tr {
                    th scope="col" { "Session" } th scope="col" { "Agent" } th scope="col" { "State" }
                    th scope="col" { "Since" } th scope="col" { "Runs out" } th scope="col" { "Rule" }
                    @if viewer.manage { th scope="col" { "Release" } }
                } }
                tbody {
                    @for session in sessions {
                        tr id={ "session-" (session.session) } {
                            th scope="row" { (session.session) @if let Some(customer) = &session.customer { br; span class="muted" { (customer) } } }
                            td { (session.agent.as_ref().map_or_else(String::new, ToString::to_string)) @if session.weight > 1 { br; span class="muted" { (session.weight) " seats" } } }
                            td { (session.state.as_str()) }
                            td { (ago(now, Some(session.since))) }
                            td { (clock_time(session.expires_at)) }
                            td { (session.rule.clone().unwrap_or_default()) }
                            @if viewer.manage {
                                td {
                                    form method="post" action="/sessions/release" class="inline" {
                                        input type="hidden" name="app" value=(app);
                                        input type="hidden" name="session" value=(session.session);
                                        input type="hidden" name="csrf" value=(viewer.csrf);
                                        button type="submit" aria-label={ "Release " (session.session) } { "release" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// What if: a draft config replayed over the decision log, and replay's report.
pub(super) fn whatif(
    viewer: &Viewer,
    apps: &[Arc<App>],
    drafts: &[String],
    logging: bool,
    form: &super::WhatIfForm,
    outcome: Option<Result<crate::replay::Report, String>>,
) -> Markup {
    let app = form
        .app
        .and_then(|id| SdkAppId::new(id).ok())
        .or_else(|| apps.first().map(|a| a.id));
    page(
        Some(viewer),
        apps,
        app,
        "What if",
        html! {
            h1 { "What if" }
            p { "Replays the decision log of the last hours under a draft config: what would have been decided differently, and what it would have done to the seats." }
            @if !logging { p class="error" { "The router writes no decision log ([router.decision_log] path): there is nothing to replay." } }
            form method="post" action="/whatif" class="explain" {
                @if let Some(app) = app { input type="hidden" name="app" value=(app); }
                input type="hidden" name="csrf" value=(viewer.csrf);
                label { "A draft from the drafts folder "
                    select name="draft" {
                        option value="" { "(none: use the pasted config)" }
                        @for draft in drafts { option value=(draft) selected[form.draft == *draft] { (draft) } }
                    }
                }
                label { "Or paste a config " textarea name="text" rows="8" cols="80" { (form.text) } }
                label { "Hours back " input type="number" name="hours" min="1" max="336" value=(form.hours.unwrap_or(24)); }
                button type="submit" { "Replay" }
            }
            @match outcome {
                None => {}
                Some(Err(error)) => p class="error" role="alert" { (error) },
                Some(Ok(report)) => (report_view(&report)),
            }
        },
    )
}

fn report_view(report: &crate::replay::Report) -> Markup {
    html! {
        section class="report" aria-label="Replay report" {
            h2 { "Report" }
            p id="report-summary" { (report.decisions) " decisions replayed, " strong { (report.changed_total) " decided differently" } "; fallbacks " (report.fallbacks_before) " as logged, " (report.fallbacks_after) " under the draft; " (report.changes) " state changes applied" @if report.refused_total > 0 { ", " (report.refused_total) " refused by the draft" } "." }
            @if !report.changed_by_rule.is_empty() {
                table { caption { "Changed, by the rule that decided as logged" } thead { tr { th scope="col" { "Rule" } th scope="col" { "Decisions" } } }
                    tbody { @for (rule, n) in &report.changed_by_rule { tr { td { (rule) } td { (n) } } } } }
            }
            @if !report.groups.is_empty() {
                table { caption { "Seats per group: peak and average, as logged → under the draft" }
                    thead { tr { th scope="col" { "Group" } th scope="col" { "Peak" } th scope="col" { "Average" } } }
                    tbody { @for (group, (before, after)) in &report.groups { tr {
                        td { (report.group_names.get(group).cloned().unwrap_or_else(|| group.clone())) }
                        td { (before.peak) " → " (after.peak) }
                        td { (format!("{:.1} → {:.1}", before.average, after.average)) }
                    } } }
                }
            }
            @if !report.changed.is_empty() {
                table class="changed" { caption { "Decisions made differently (the first " (crate::replay::Report::SHOWN) ")" }
                    thead { tr { th scope="col" { "Session" } th scope="col" { "As logged" } th scope="col" { "Under the draft" } } }
                    tbody { @for changed in &report.changed { tr {
                        td { (changed.session) }
                        td { (changed.before.rule) ": " (changed.before.agents.join(", ")) @if changed.before.fallback { " (fallback)" } }
                        td { (changed.after.rule) ": " (changed.after.agents.join(", ")) @if changed.after.fallback { " (fallback)" } }
                    } } }
                }
            }
            @if !report.unknown_rules.is_empty() || !report.unknown_apps.is_empty() {
                p class="warn" { "Some entries are of apps or rules the draft does not have: " (report.unknown_apps.len()) " apps, " (report.unknown_rules.len()) " rules." }
            }
        }
    }
}
