//! What the gateway counts: each callback by command and outcome, how long callbacks took
//! by command, refusals and fallbacks by reason, exposed as Prometheus text on
//! `GET /metrics`. Plain atomics on the hot path; nothing here decides anything.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use handoff_core::telemetry::{self, Mirrored};
use opentelemetry::{KeyValue, metrics::Histogram};

/// What the gateway exports over OTLP from its Prometheus text (latency goes as a
/// histogram of its own).
pub const MIRRORED: &[Mirrored] = &[
    Mirrored {
        name: "handoff_gateway_callbacks_total",
        gauge: false,
        help: "Tencent callbacks by command and outcome",
    },
    Mirrored {
        name: "handoff_gateway_refusals_total",
        gauge: false,
        help: "Callbacks refused, by reason",
    },
    Mirrored {
        name: "handoff_gateway_fallbacks_total",
        gauge: false,
        help: "Callbacks answered with the app's fallback group, by the router's failure",
    },
    Mirrored {
        name: "handoff_gateway_config_reloads_total",
        gauge: false,
        help: "Config reloads, by outcome",
    },
    Mirrored {
        name: "handoff_gateway_config_last_refused_seconds",
        gauge: true,
        help: "When a config reload was last refused, Unix seconds",
    },
];

/// Upper bounds of the latency histogram's buckets, seconds (Tencent allows 2 s).
const BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
];

/// One command's latency histogram.
#[derive(Debug, Default)]
struct Latency {
    /// Callbacks at or under each bucket's bound (not cumulative; summed when shown).
    buckets: [AtomicU64; BUCKETS.len()],
    /// All callbacks, the ones over the last bound included.
    count: AtomicU64,
    /// Their total time, microseconds.
    sum_us: AtomicU64,
}

/// The callback, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `ChatBot.OnAssignHuman`.
    AssignHuman,
    /// `Desk.SessionEventNotify`.
    SessionEvent,
    /// `Member.EventNotify`.
    MemberEvent,
    /// Refused before its command was known.
    Unknown,
}

impl Command {
    const ALL: [Command; 4] = [
        Command::AssignHuman,
        Command::SessionEvent,
        Command::MemberEvent,
        Command::Unknown,
    ];

    fn label(self) -> &'static str {
        match self {
            Command::AssignHuman => "assign_human",
            Command::SessionEvent => "session_event",
            Command::MemberEvent => "member_event",
            Command::Unknown => "unknown",
        }
    }
}

/// How a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with the router's routing answer.
    Answered,
    /// Answered with the app's fallback group because the router failed.
    Fallback,
    /// An event the router recorded.
    Recorded,
    /// An event the router had recorded before (a retry).
    Duplicate,
    /// An event older than what the router knows: acknowledged, nothing changed.
    Superseded,
    /// An event dated too far from the router's clock: acknowledged, ignored.
    Implausible,
    /// A session event naming an agent the router does not know: acknowledged, seats
    /// nobody.
    UnknownAgent,
    /// A session the router did not reserve, past its agent's capacity and margin:
    /// acknowledged, not counted.
    OverCapacity,
    /// An event without routing meaning: acknowledged, not sent on.
    Ignored,
    /// A member event for an agent the router does not know: acknowledged.
    UnknownMember,
    /// A status in a spelling the gateway does not know: acknowledged.
    UnknownStatus,
    /// The router failed or was too slow: answered FAIL so that Tencent retries.
    RouterFailed,
    /// Refused: malformed, unauthenticated, oversized.
    Refused,
}

impl Outcome {
    const ALL: [Outcome; 13] = [
        Outcome::Answered,
        Outcome::Fallback,
        Outcome::Recorded,
        Outcome::Duplicate,
        Outcome::Superseded,
        Outcome::Implausible,
        Outcome::UnknownAgent,
        Outcome::OverCapacity,
        Outcome::Ignored,
        Outcome::UnknownMember,
        Outcome::UnknownStatus,
        Outcome::RouterFailed,
        Outcome::Refused,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Fallback => "fallback",
            Outcome::Recorded => "recorded",
            Outcome::Duplicate => "duplicate",
            Outcome::Superseded => "superseded",
            Outcome::Implausible => "implausible",
            Outcome::UnknownAgent => "unknown_agent",
            Outcome::OverCapacity => "over_capacity",
            Outcome::Ignored => "ignored",
            Outcome::UnknownMember => "unknown_member",
            Outcome::UnknownStatus => "unknown_status",
            Outcome::RouterFailed => "router_failed",
            Outcome::Refused => "refused",
        }
    }
}

const CELLS: usize = Command::ALL.len() * Outcome::ALL.len();

/// The gateway's counters.
#[derive(Debug)]
pub struct Counters {
    callbacks: [AtomicU64; CELLS],
    latency: [Latency; Command::ALL.len()],
    /// Refusals by reason (not the hot path).
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Fallback answers by the router's failure.
    fallbacks: Mutex<BTreeMap<&'static str, u64>>,
    /// Config reloads applied and refused.
    reloads: [AtomicU64; 2],
    /// When a reload was last refused, Unix seconds (0: none).
    last_refused: AtomicU64,
    /// Latency as an OTLP histogram, when metrics are exported.
    otel_latency: Option<Histogram<f64>>,
}

impl Default for Counters {
    fn default() -> Self {
        let otel_latency = telemetry::meter().map(|meter| {
            meter
                .f64_histogram("handoff_gateway_callback_seconds")
                .with_unit("s")
                .with_description("How long callbacks took, by command")
                .with_boundaries(BUCKETS.to_vec())
                .build()
        });
        Self {
            callbacks: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: std::array::from_fn(|_| Latency::default()),
            refusals: Mutex::default(),
            fallbacks: Mutex::default(),
            reloads: Default::default(),
            last_refused: AtomicU64::new(0),
            otel_latency,
        }
    }
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, reason: &'static str) {
    *map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(reason)
        .or_default() += 1;
}

fn cell(command: Command, outcome: Outcome) -> usize {
    let row = Command::ALL.iter().position(|c| *c == command).unwrap_or(0);
    let column = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
    row * Outcome::ALL.len() + column
}

impl Counters {
    /// Counts one callback.
    /// Also notes them on the callback's span, when traces are exported.
    pub fn count(&self, command: Command, outcome: Outcome) {
        if let Some(counter) = self.callbacks.get(cell(command, outcome)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        tracing::Span::current()
            .record("command", command.label())
            .record("outcome", outcome.label());
    }

    /// Notes how long a callback of `command` took, answered or not.
    pub fn observe(&self, command: Command, elapsed: Duration) {
        let row = Command::ALL.iter().position(|c| *c == command).unwrap_or(0);
        let Some(latency) = self.latency.get(row) else {
            return;
        };
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .and_then(|i| latency.buckets.get(i))
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        latency.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        latency.sum_us.fetch_add(micros, Ordering::Relaxed);
        if let Some(histogram) = &self.otel_latency {
            histogram.record(seconds, &[KeyValue::new("command", command.label())]);
        }
    }

    /// Counts a config reload, applied or refused.
    pub fn reloaded(&self, refused: bool) {
        self.reloads[usize::from(refused)].fetch_add(1, Ordering::Relaxed);
        if refused {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            self.last_refused.store(now, Ordering::Relaxed);
        }
    }

    /// Counts a refused callback by why.
    pub fn refused(&self, reason: &'static str) {
        bump(&self.refusals, reason);
    }

    /// Counts a fallback answer by the router's failure.
    pub fn fell_back(&self, reason: &'static str) {
        bump(&self.fallbacks, reason);
    }

    /// How many callbacks of `command` ended in `outcome`.
    pub fn get(&self, command: Command, outcome: Outcome) -> u64 {
        self.callbacks
            .get(cell(command, outcome))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition of every counter.
    pub fn exposition(&self) -> String {
        let mut text = String::from(
            "# HELP handoff_gateway_callbacks_total Tencent callbacks by command and outcome.\n\
             # TYPE handoff_gateway_callbacks_total counter\n",
        );
        for command in Command::ALL {
            for outcome in Outcome::ALL {
                let _ = writeln!(
                    text,
                    "handoff_gateway_callbacks_total{{command=\"{}\",outcome=\"{}\"}} {}",
                    command.label(),
                    outcome.label(),
                    self.get(command, outcome)
                );
            }
        }
        text.push_str(
            "# HELP handoff_gateway_callback_seconds How long callbacks took, by command.\n\
             # TYPE handoff_gateway_callback_seconds histogram\n",
        );
        for (command, latency) in Command::ALL.iter().zip(&self.latency) {
            let label = command.label();
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&latency.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    text,
                    "handoff_gateway_callback_seconds_bucket{{command=\"{label}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = latency.count.load(Ordering::Relaxed);
            let sum = latency.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                text,
                "handoff_gateway_callback_seconds_bucket{{command=\"{label}\",le=\"+Inf\"}} {count}\n\
                 handoff_gateway_callback_seconds_sum{{command=\"{label}\"}} {sum}\n\
                 handoff_gateway_callback_seconds_count{{command=\"{label}\"}} {count}"
            );
        }
        for (name, help, map) in [
            (
                "handoff_gateway_refusals_total",
                "Callbacks refused, by reason.",
                &self.refusals,
            ),
            (
                "handoff_gateway_fallbacks_total",
                "Callbacks answered with the app's fallback group, by the router's failure.",
                &self.fallbacks,
            ),
        ] {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
            let map = map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (reason, count) in map.iter() {
                let _ = writeln!(text, "{name}{{reason=\"{reason}\"}} {count}");
            }
        }
        let _ = writeln!(
            text,
            "# HELP handoff_gateway_config_reloads_total Config reloads, by outcome: applied or refused (the running config stays).\n\
             # TYPE handoff_gateway_config_reloads_total counter\n\
             handoff_gateway_config_reloads_total{{outcome=\"applied\"}} {}\n\
             handoff_gateway_config_reloads_total{{outcome=\"refused\"}} {}\n\
             # HELP handoff_gateway_config_last_refused_seconds When a config reload was last refused, Unix seconds (0: none since start).\n\
             # TYPE handoff_gateway_config_last_refused_seconds gauge\n\
             handoff_gateway_config_last_refused_seconds {}",
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
            self.last_refused.load(Ordering::Relaxed),
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cell_counts_on_its_own_and_shows_in_the_exposition() {
        let counters = Counters::default();
        counters.count(Command::SessionEvent, Outcome::Duplicate);
        counters.count(Command::SessionEvent, Outcome::Duplicate);
        counters.count(Command::MemberEvent, Outcome::UnknownMember);
        assert_eq!(counters.get(Command::SessionEvent, Outcome::Duplicate), 2);
        assert_eq!(counters.get(Command::SessionEvent, Outcome::Recorded), 0);
        assert_eq!(
            counters.get(Command::MemberEvent, Outcome::UnknownMember),
            1
        );
        let text = counters.exposition();
        assert!(text.contains(
            "handoff_gateway_callbacks_total{command=\"session_event\",outcome=\"duplicate\"} 2\n"
        ));
        assert_eq!(
            text.lines()
                .filter(|line| line.starts_with("handoff_gateway_callbacks_total{"))
                .count(),
            CELLS
        );
    }

    #[test]
    fn latency_lands_in_its_bucket_and_buckets_add_up() {
        let counters = Counters::default();
        counters.observe(Command::AssignHuman, Duration::from_micros(300));
        counters.observe(Command::AssignHuman, Duration::from_millis(30));
        counters.observe(Command::AssignHuman, Duration::from_secs(3));
        counters.refused("bad_signature");
        counters.fell_back("router_timeout");
        let text = counters.exposition();
        for line in [
            "handoff_gateway_callback_seconds_bucket{command=\"assign_human\",le=\"0.0005\"} 1\n",
            "handoff_gateway_callback_seconds_bucket{command=\"assign_human\",le=\"0.025\"} 1\n",
            "handoff_gateway_callback_seconds_bucket{command=\"assign_human\",le=\"0.05\"} 2\n",
            "handoff_gateway_callback_seconds_bucket{command=\"assign_human\",le=\"2\"} 2\n",
            "handoff_gateway_callback_seconds_bucket{command=\"assign_human\",le=\"+Inf\"} 3\n",
            "handoff_gateway_callback_seconds_count{command=\"assign_human\"} 3\n",
            "handoff_gateway_refusals_total{reason=\"bad_signature\"} 1\n",
            "handoff_gateway_fallbacks_total{reason=\"router_timeout\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
