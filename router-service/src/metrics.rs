//! What the router counts, as Prometheus text: decisions, fallbacks, rejected calls,
//! session events and status reports, the store's latency and errors, and (read at each
//! scrape) each group's agents and seats. Every label set is bounded by the config (apps,
//! rules, groups) or by an enum; no session or customer id is ever a label.

use std::{sync::atomic::AtomicI64, time::Duration};

use handoff_core::{
    config::AgentStatus,
    id::SdkAppId,
    telemetry::{self, Mirrored},
};
use opentelemetry::{KeyValue, metrics::Histogram as OtelHistogram};

use crate::store::{Applied, Assignment, SessionEventKind};

use prometheus_client::{
    encoding::{EncodeLabelSet, text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// A decision's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// The rule that decided.
    pub rule: String,
    /// Its strategy (`none` for a fallback).
    pub strategy: &'static str,
    /// `decided`, `replayed` or `fallback`.
    pub outcome: &'static str,
}

/// A fallback's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FallbackLabels {
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// The rule whose targets had nobody.
    pub rule: String,
    /// Why: `no_eligible_agent` (every agent of every target was excluded or full).
    pub reason: &'static str,
}

/// A rejected call's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectionLabels {
    /// The gRPC method.
    pub method: &'static str,
    /// The gRPC status code.
    pub code: &'static str,
}

/// A reported event's labels (session events and status reports).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct EventLabels {
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// The event (`assigned`, `transferred`, `failed`, `ended`, or a status).
    pub kind: &'static str,
    /// `recorded`, `duplicate` or `superseded`.
    pub outcome: &'static str,
}

/// A store operation's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StoreLabels {
    /// `assign`, `inspect` or `apply`.
    pub operation: &'static str,
}

/// Labels of what has only a reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: &'static str,
}

/// Labels of what has only an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// How it went.
    pub outcome: &'static str,
}

/// A group's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GroupLabels {
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// The agent group (Tencent's `AgentGroupId`).
    pub group: u64,
}

/// A Desk sync round's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeskLabels {
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// `roster` (groups and members) or `status` (statuses and live load).
    pub sync: &'static str,
    /// `ok`, or what went wrong: `rate_limited`, `bad_credentials`, `not_desk`,
    /// `unreachable`, `malformed`, `failed`, `store`.
    pub outcome: &'static str,
}

/// Labels of what a Desk sync changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeskChangeLabels {
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// `member_added`, `member_removed`, `member_changed`, `groups`, `status`, `load`,
    /// `seat_released`.
    pub change: &'static str,
}

/// Labels of a Desk status code no `member_status` entry maps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeskCodeLabels {
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// Desk's `MemberStatus`.
    pub code: i64,
}

/// Labels of one app's kind of Desk sync.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeskSyncLabels {
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// `roster` or `status`.
    pub sync: &'static str,
}

/// The router's metrics.
pub struct Metrics {
    registry: Registry,
    /// Decisions made.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Decisions that fell back to a group alone.
    pub fallbacks: Family<FallbackLabels, Counter>,
    /// Calls refused or failed.
    pub rejections: Family<RejectionLabels, Counter>,
    /// Session events reported.
    pub session_events: Family<EventLabels, Counter>,
    /// Agent status reports.
    pub status_reports: Family<EventLabels, Counter>,
    /// How long the store took, seconds.
    pub store_seconds: Family<StoreLabels, Histogram>,
    /// Store operations that failed.
    pub store_errors: Family<StoreLabels, Counter>,
    /// Agents of the group available now and below capacity.
    pub agents_available: Family<GroupLabels, Gauge<i64, AtomicI64>>,
    /// Seats of the group's agents held by sessions now.
    pub seats_in_use: Family<GroupLabels, Gauge<i64, AtomicI64>>,
    /// Seats left below capacity on the group's available agents.
    pub seats_free: Family<GroupLabels, Gauge<i64, AtomicI64>>,
    /// The group's agents wrapping up a session now (by the group's or app's `wrap_up`).
    pub agents_wrapping_up: Family<GroupLabels, Gauge<i64, AtomicI64>>,
    /// The group's agents parked after missed offers.
    pub agents_parked: Family<GroupLabels, Gauge<i64, AtomicI64>>,
    /// Offers the group's agents missed in a row, summed (a rising count precedes parks).
    pub missed_offers: Family<GroupLabels, Gauge<i64, AtomicI64>>,
    /// Sessions a rule with `use_headroom` reserved from the seats the group keeps.
    pub headroom_used: Family<GroupLabels, Counter>,
    /// Decision log entries written.
    pub decision_log_written: Counter,
    /// Decision log entries dropped, by reason: `queue_full` (the writer fell behind),
    /// `io` (the disk did not take them).
    pub decision_log_dropped: Family<ReasonLabels, Counter>,
    /// Connections the gRPC listener refused or closed, by reason.
    pub connections_closed: Family<ReasonLabels, Counter>,
    /// The embedded store's journal on disk, bytes (read at each scrape).
    pub journal_bytes: Gauge<i64, AtomicI64>,
    /// Times the Redis store found Redis had lost handoff's data.
    pub store_data_lost: Counter,
    /// Config reloads, by outcome: `applied`, `refused`.
    pub config_reloads: Family<OutcomeLabels, Counter>,
    /// When the running config was loaded (at start or by a reload), Unix seconds.
    pub config_loaded: Gauge<i64, AtomicI64>,
    /// When a reload was last refused, Unix seconds (0: never since start).
    pub config_last_refused: Gauge<i64, AtomicI64>,
    /// Desk sync rounds, by app, sync and outcome.
    pub desk_syncs: Family<DeskLabels, Counter>,
    /// How long Desk sync rounds took, seconds.
    pub desk_sync_seconds: Family<DeskSyncLabels, Histogram>,
    /// When each sync last succeeded, Unix seconds (absent: never since start).
    pub desk_last_sync: Family<DeskSyncLabels, Gauge<i64, AtomicI64>>,
    /// What Desk syncs changed (drift repaired), by kind.
    pub desk_changes: Family<DeskChangeLabels, Counter>,
    /// Members seen with a `MemberStatus` that `member_status` does not map.
    pub desk_unknown_status: Family<DeskCodeLabels, Counter>,
    /// The store's latency as an OTLP histogram, when metrics are exported.
    otel_store_seconds: Option<OtelHistogram<f64>>,
}

/// Every counter and gauge of the router: its name and help in the Prometheus text, and
/// what it exports over OTLP from that text (the store's latency, the one histogram, goes
/// as a histogram of its own).
pub const MIRRORED: &[Mirrored] = &[
    Mirrored {
        name: "handoff_router_decisions_total",
        gauge: false,
        help: "AssignHuman decisions, by app, rule, strategy and outcome",
    },
    Mirrored {
        name: "handoff_router_fallbacks_total",
        gauge: false,
        help: "Decisions that found no agent and answered a group alone, by app, rule and reason",
    },
    Mirrored {
        name: "handoff_router_rejections_total",
        gauge: false,
        help: "Calls refused or failed, by method and gRPC code",
    },
    Mirrored {
        name: "handoff_router_session_events_total",
        gauge: false,
        help: "Session events reported, by app, kind and outcome",
    },
    Mirrored {
        name: "handoff_router_status_reports_total",
        gauge: false,
        help: "Agent status reports, by app, status and outcome",
    },
    Mirrored {
        name: "handoff_router_store_errors_total",
        gauge: false,
        help: "State store operations that failed, by operation",
    },
    Mirrored {
        name: "handoff_router_group_agents_available",
        gauge: true,
        help: "Agents of the group available now and below capacity",
    },
    Mirrored {
        name: "handoff_router_group_seats_in_use",
        gauge: true,
        help: "Seats of the group's agents held by sessions now",
    },
    Mirrored {
        name: "handoff_router_group_seats_free",
        gauge: true,
        help: "Seats left below capacity on the group's available agents",
    },
    Mirrored {
        name: "handoff_router_decision_log_written_total",
        gauge: false,
        help: "Decision log entries written",
    },
    Mirrored {
        name: "handoff_router_store_data_lost_total",
        gauge: false,
        help: "Times the Redis store found Redis had lost handoff's state (its epoch key gone or replaced)",
    },
    Mirrored {
        name: "handoff_router_config_reloads_total",
        gauge: false,
        help: "Config reloads, by outcome: applied (swapped in) or refused (the running config stays; the error is logged)",
    },
    Mirrored {
        name: "handoff_router_config_loaded_seconds",
        gauge: true,
        help: "When the running config was loaded, at start or by a reload, Unix seconds",
    },
    Mirrored {
        name: "handoff_router_config_last_refused_seconds",
        gauge: true,
        help: "When a config reload was last refused, Unix seconds (0: none since start)",
    },
    Mirrored {
        name: "handoff_router_journal_bytes",
        gauge: true,
        help: "The embedded store's journal on disk, bytes: what is not folded into its file yet (0 on other stores)",
    },
    Mirrored {
        name: "handoff_router_connections_closed_total",
        gauge: false,
        help: "Connections the gRPC listener refused or closed, by reason (max_connections, preface_timeout, bad_preface, idle_timeout)",
    },
    Mirrored {
        name: "handoff_router_decision_log_dropped_total",
        gauge: false,
        help: "Decision log entries dropped, by reason: queue_full (its writer fell behind; callbacks never wait for it), io (the disk did not take them)",
    },
    Mirrored {
        name: "handoff_router_desk_syncs_total",
        gauge: false,
        help: "Desk sync rounds, by app, sync (roster, status) and outcome (ok, rate_limited, bad_credentials, not_desk, unreachable, malformed, failed, store)",
    },
    Mirrored {
        name: "handoff_router_desk_last_sync_seconds",
        gauge: true,
        help: "When each Desk sync of the app last succeeded, Unix seconds",
    },
    Mirrored {
        name: "handoff_router_desk_changes_total",
        gauge: false,
        help: "What Desk syncs changed, by app and change (member_added, member_removed, member_changed, groups, status, load, seat_released)",
    },
    Mirrored {
        name: "handoff_router_desk_unknown_status_total",
        gauge: false,
        help: "Members Desk showed with a MemberStatus code that [apps.desk] member_status does not map, by app and code",
    },
    Mirrored {
        name: "handoff_router_group_agents_wrapping_up",
        gauge: true,
        help: "Agents of the group wrapping up a session that ended (its or the app's wrap_up), read at each scrape",
    },
    Mirrored {
        name: "handoff_router_group_agents_parked",
        gauge: true,
        help: "Agents of the group parked after missing max_missed offers in a row, read at each scrape",
    },
    Mirrored {
        name: "handoff_router_group_missed_offers",
        gauge: true,
        help: "Offers the group's agents missed in a row (Tencent gave the sessions handoff reserved them to others), summed over its agents, read at each scrape",
    },
    Mirrored {
        name: "handoff_router_headroom_used_total",
        gauge: false,
        help: "Sessions a rule with use_headroom reserved from the seats the group keeps as headroom, by app and group",
    },
];

/// Registers `metric` as `handoff_router_<name>` with its help from [`MIRRORED`].
fn register(registry: &mut Registry, name: &str, metric: impl prometheus_client::registry::Metric) {
    let help = MIRRORED
        .iter()
        .find(|family| {
            family
                .name
                .strip_prefix("handoff_router_")
                .map(|n| n.trim_end_matches("_total"))
                == Some(name)
        })
        .map_or("", |family| family.help);
    registry.register(name, help, metric);
}

/// The OpenMetrics text `open` (as prometheus-client encodes it) in Prometheus' text
/// format 0.0.4, which Prometheus takes without negotiating and `promtool check metrics`
/// reads: a counter's HELP and TYPE name its samples (`_total`), no `# UNIT` or `# EOF`.
/// Each family of `families` with no sample yet is described all the same, so every
/// metric is there from the first scrape.
pub fn prometheus_text(open: &str, families: &[Mirrored]) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + 64 * families.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(described.as_deref().unwrap_or(line));
        out.push('\n');
    }
    for family in families {
        if !out.contains(&format!("# TYPE {} ", family.name)) {
            let kind = if family.gauge { "gauge" } else { "counter" };
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n",
                name = family.name,
                help = family.help
            ));
        }
    }
    out
}

/// Now, Unix seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

/// The store latency histogram's bounds, seconds: 50 us to about 1.6 s.
fn store_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16)
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered under `handoff_router_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("handoff_router");
        let decisions = Family::default();
        let fallbacks = Family::default();
        let rejections = Family::default();
        let session_events = Family::default();
        let status_reports = Family::default();
        let store_seconds = Family::<StoreLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(store_buckets())
        });
        let otel_store_seconds = telemetry::meter().map(|meter| {
            meter
                .f64_histogram("handoff_router_store_seconds")
                .with_unit("s")
                .with_description("Time the state store took, by operation")
                .with_boundaries(store_buckets().collect())
                .build()
        });
        let store_errors = Family::default();
        let agents_available = Family::default();
        let seats_in_use = Family::default();
        let seats_free = Family::default();
        let agents_wrapping_up = Family::default();
        let agents_parked = Family::default();
        let missed_offers = Family::default();
        let headroom_used = Family::default();
        let decision_log_written = Counter::default();
        let decision_log_dropped = Family::<ReasonLabels, Counter>::default();
        for reason in ["queue_full", "io"] {
            let _ = decision_log_dropped.get_or_create(&ReasonLabels { reason });
        }
        let journal_bytes = Gauge::<i64, AtomicI64>::default();
        register(&mut registry, "journal_bytes", journal_bytes.clone());
        let store_data_lost = Counter::default();
        register(&mut registry, "store_data_lost", store_data_lost.clone());
        let config_reloads = Family::<OutcomeLabels, Counter>::default();
        for outcome in ["applied", "refused"] {
            let _ = config_reloads.get_or_create(&OutcomeLabels { outcome });
        }
        let config_loaded = Gauge::<i64, AtomicI64>::default();
        config_loaded.set(unix_now());
        let config_last_refused = Gauge::<i64, AtomicI64>::default();
        register(&mut registry, "config_reloads", config_reloads.clone());
        register(
            &mut registry,
            "config_loaded_seconds",
            config_loaded.clone(),
        );
        register(
            &mut registry,
            "config_last_refused_seconds",
            config_last_refused.clone(),
        );
        let connections_closed = Family::default();
        register(
            &mut registry,
            "connections_closed",
            connections_closed.clone(),
        );
        register(
            &mut registry,
            "decision_log_written",
            decision_log_written.clone(),
        );
        register(
            &mut registry,
            "decision_log_dropped",
            decision_log_dropped.clone(),
        );
        register(&mut registry, "decisions", decisions.clone());
        register(&mut registry, "fallbacks", fallbacks.clone());
        register(&mut registry, "rejections", rejections.clone());
        register(&mut registry, "session_events", session_events.clone());
        register(&mut registry, "status_reports", status_reports.clone());
        registry.register(
            "store_seconds",
            "Time the state store took, by operation",
            store_seconds.clone(),
        );
        register(&mut registry, "store_errors", store_errors.clone());
        register(
            &mut registry,
            "group_agents_available",
            agents_available.clone(),
        );
        register(&mut registry, "group_seats_in_use", seats_in_use.clone());
        register(&mut registry, "group_seats_free", seats_free.clone());
        register(
            &mut registry,
            "group_agents_wrapping_up",
            agents_wrapping_up.clone(),
        );
        register(&mut registry, "group_agents_parked", agents_parked.clone());
        register(&mut registry, "group_missed_offers", missed_offers.clone());
        register(&mut registry, "headroom_used", headroom_used.clone());
        let desk_syncs = Family::default();
        register(&mut registry, "desk_syncs", desk_syncs.clone());
        let desk_sync_seconds = Family::<DeskSyncLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.005, 2.0, 14,
            ))
        });
        registry.register(
            "desk_sync_seconds",
            "Time Desk sync rounds took, by app and sync",
            desk_sync_seconds.clone(),
        );
        let desk_last_sync = Family::default();
        register(
            &mut registry,
            "desk_last_sync_seconds",
            desk_last_sync.clone(),
        );
        let desk_changes = Family::default();
        register(&mut registry, "desk_changes", desk_changes.clone());
        let desk_unknown_status = Family::default();
        register(
            &mut registry,
            "desk_unknown_status",
            desk_unknown_status.clone(),
        );
        Self {
            registry,
            desk_syncs,
            desk_sync_seconds,
            desk_last_sync,
            desk_changes,
            desk_unknown_status,
            decisions,
            fallbacks,
            rejections,
            session_events,
            status_reports,
            store_seconds,
            store_errors,
            agents_available,
            seats_in_use,
            seats_free,
            agents_wrapping_up,
            agents_parked,
            missed_offers,
            headroom_used,
            decision_log_written,
            decision_log_dropped,
            connections_closed,
            journal_bytes,
            store_data_lost,
            config_reloads,
            config_loaded,
            config_last_refused,
            otel_store_seconds,
        }
    }

    /// Counts an AssignHuman answered for `app`: by rule, strategy and outcome (`decided`,
    /// `replayed`, `fallback`), and a fallback by why.
    pub fn decided(&self, app: SdkAppId, assignment: &Assignment) {
        let (answer, replayed) = assignment.parts();
        let outcome = match (replayed, answer.fallback) {
            (true, _) => "replayed",
            (_, true) => "fallback",
            (_, false) => "decided",
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                app: app.get(),
                rule: answer.rule.clone(),
                strategy: answer.strategy.map_or("none", |s| s.as_str()),
                outcome,
            })
            .inc();
        if outcome == "fallback" {
            self.fallbacks
                .get_or_create(&FallbackLabels {
                    app: app.get(),
                    rule: answer.rule.clone(),
                    reason: "no_eligible_agent",
                })
                .inc();
        }
    }

    /// Counts a session event of `app`, by kind and what the router made of it.
    pub fn session_reported(&self, app: SdkAppId, kind: SessionEventKind, applied: Applied) {
        self.session_events
            .get_or_create(&EventLabels {
                app: app.get(),
                kind: kind.as_str(),
                outcome: applied.as_str(),
            })
            .inc();
    }

    /// Counts a status report of `app`, by status and what the router made of it.
    pub fn status_reported(&self, app: SdkAppId, status: AgentStatus, applied: Applied) {
        self.status_reports
            .get_or_create(&EventLabels {
                app: app.get(),
                kind: status.as_str(),
                outcome: applied.as_str(),
            })
            .inc();
    }

    /// Counts a reload: applied, or refused.
    pub fn reloaded(&self, refused: bool) {
        let outcome = if refused { "refused" } else { "applied" };
        self.config_reloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        let gauge = if refused {
            &self.config_last_refused
        } else {
            &self.config_loaded
        };
        gauge.set(unix_now());
    }

    /// Notes one store operation that took `elapsed` and succeeded or not.
    pub fn store(&self, operation: &'static str, elapsed: Duration, ok: bool) {
        let labels = StoreLabels { operation };
        self.store_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(histogram) = &self.otel_store_seconds {
            histogram.record(
                elapsed.as_secs_f64(),
                &[KeyValue::new("operation", operation)],
            );
        }
        if !ok {
            self.store_errors.get_or_create(&labels).inc();
        }
    }

    /// The metrics as OpenMetrics text (`application/openmetrics-text; version=1.0.0`).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }

    /// The metrics in Prometheus' text format 0.0.4 (`text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        prometheus_text(&self.encode_openmetrics(), MIRRORED)
    }
}
