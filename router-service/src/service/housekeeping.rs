//! The router's background work, owned by the router and stopped with it: the decision
//! log's state for each new file, forgetting previous agents past `sticky_ttl`, and (when
//! metrics go over OTLP) the group gauges. Each loop holds the router weakly and its task
//! is aborted when the router is dropped, so none outlives it.

use std::sync::Arc;

use handoff_core::{config::AgentStatus, telemetry};
use tokio::task::JoinHandle;

use super::{Router, desk_sync};
use crate::{
    decision_log::{AppSnapshot, Entry},
    metrics::{GroupLabels, MIRRORED},
    store::{AnyStore, Change, Look, Store, forget_round},
};

/// The router's background tasks, aborted when dropped.
#[derive(Debug, Default)]
pub(super) struct Housekeeping(Vec<JoinHandle<()>>);

impl Drop for Housekeeping {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Housekeeping {
    /// Starts `router`'s background work.
    pub(super) fn spawn(router: &Arc<Router<AnyStore>>) -> Self {
        let mut tasks = Vec::new();
        if let Some(log) = &router.decision_log {
            let (wanted, router) = (log.state_wanted(), Arc::downgrade(router));
            tasks.push(tokio::spawn(async move {
                loop {
                    wanted.notified().await;
                    let Some(router) = router.upgrade() else {
                        return;
                    };
                    if !router.log_state().await {
                        // The store cannot be read now: try again in a moment.
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        wanted.notify_one();
                    }
                }
            }));
        }
        if let Some(meter) = telemetry::meter() {
            let weak = Arc::downgrade(router);
            telemetry::mirror(meter, MIRRORED, move || {
                weak.upgrade().map(|router| router.metrics.encode())
            });
            let weak = Arc::downgrade(router);
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(telemetry::export_interval());
                loop {
                    every.tick().await;
                    let Some(router) = weak.upgrade() else {
                        return;
                    };
                    router.count_seats().await;
                }
            }));
        }
        let syncing = Arc::downgrade(router);
        tasks.push(tokio::spawn(async move {
            // Each app's Desk sync, aborted with this task; one started for every app that
            // gains `[apps.desk]`, and ended by itself when the app loses it.
            let mut running = Tasks::default();
            let holder = holder_name();
            loop {
                {
                    let Some(router) = syncing.upgrade() else {
                        return;
                    };
                    running.0.retain(|_, task| !task.is_finished());
                    for app in router
                        .catalog
                        .load()
                        .apps()
                        .filter(|app| app.desk.is_some())
                    {
                        running.0.entry(app.id).or_insert_with(|| {
                            tokio::spawn(desk_sync::run(syncing.clone(), app.id, holder.clone()))
                        });
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }));
        let forgetting = Arc::downgrade(router);
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(pause) = forgetting.upgrade().map(|router| router.forget_every()) else {
                    return;
                };
                tokio::time::sleep(pause).await;
                let Some(router) = forgetting.upgrade() else {
                    return;
                };
                router.forget_links().await;
            }
        }));
        Self(tasks)
    }
}

/// Tasks keyed by app, aborted when dropped.
#[derive(Default)]
struct Tasks(std::collections::HashMap<handoff_core::id::SdkAppId, JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

/// A name for this router among the replicas sharing a store: host, process and a random
/// part (two routers of one process, as in tests, differ too).
fn holder_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos()),
    );
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "router".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        hasher.finish() as u32
    )
}

impl<S: Store> Router<S> {
    /// Sets each group's agents and seats gauges to what the store holds now, and the
    /// journal's size.
    pub(super) async fn count_seats(&self) {
        let journal = self.store.journal_bytes().unwrap_or(0);
        self.metrics
            .journal_bytes
            .set(i64::try_from(journal).unwrap_or(i64::MAX));
        let catalog = self.catalog.load_full();
        for app in catalog.apps() {
            let Ok(listings) = self.list_agents(app.id, None).await else {
                continue;
            };
            for group in app.groups() {
                let labels = GroupLabels {
                    app: app.id.get(),
                    group: group.id.get(),
                };
                let (mut available, mut in_use, mut free) = (0i64, 0i64, 0i64);
                let wrap_up = group.wrap_up.unwrap_or(app.wrap_up);
                let now = self.clock.now();
                let mut wrapping = 0i64;
                let mut parked = 0i64;
                let mut missed = 0i64;
                for listing in listings
                    .iter()
                    .filter(|listing| listing.agent.groups.contains(&group.id))
                {
                    if !wrap_up.is_zero()
                        && listing
                            .load
                            .last_finished
                            .is_some_and(|finished| finished + wrap_up > now)
                    {
                        wrapping += 1;
                    }
                    parked += i64::from(listing.parked.is_some());
                    missed += i64::from(listing.missed);
                    let active = i64::from(listing.load.active);
                    let capacity = i64::from(listing.agent.capacity);
                    in_use += active;
                    if listing.status == AgentStatus::Available
                        && listing.on_shift
                        && active < capacity
                    {
                        available += 1;
                        free += capacity - active;
                    }
                }
                self.metrics
                    .agents_available
                    .get_or_create(&labels)
                    .set(available);
                self.metrics.seats_in_use.get_or_create(&labels).set(in_use);
                self.metrics.seats_free.get_or_create(&labels).set(free);
                self.metrics
                    .agents_wrapping_up
                    .get_or_create(&labels)
                    .set(wrapping);
                self.metrics
                    .agents_parked
                    .get_or_create(&labels)
                    .set(parked);
                self.metrics
                    .missed_offers
                    .get_or_create(&labels)
                    .set(missed);
            }
        }
    }

    /// How often previous agents past their app's `sticky_ttl` are forgotten: the
    /// shortest app's [`forget_round`].
    fn forget_every(&self) -> std::time::Duration {
        let shortest = self
            .catalog
            .load()
            .apps()
            .map(|app| app.sticky_ttl)
            .min()
            .unwrap_or(std::time::Duration::from_secs(120));
        forget_round(shortest)
    }

    /// Forgets, in every app, the previous agents linked longer ago than its `sticky_ttl`:
    /// they route nobody any more, and history would otherwise grow with every customer
    /// ever served.
    async fn forget_links(&self) {
        let catalog = self.catalog.load_full();
        for app in catalog.apps() {
            let before = self
                .clock
                .now()
                .checked_sub(app.sticky_ttl)
                .unwrap_or(std::time::UNIX_EPOCH);
            if let Err(err) = self.apply(app, Change::ForgetLinks { before }, None).await {
                tracing::warn!(app = %app.id, error = %err, "cannot forget old previous agents");
            }
        }
    }

    /// Records the live state of every app in the decision log (which starts each file
    /// with it); false when the store could not be read.
    pub(super) async fn log_state(&self) -> bool {
        let Some(log) = &self.decision_log else {
            return true;
        };
        let now = self.clock.now();
        let catalog = self.catalog.load_full();
        let mut apps = Vec::new();
        for app in catalog.apps() {
            let look = Look {
                customer: None,
                sessions: true,
            };
            match self
                .inspect(app, look, now, |state| AppSnapshot::of(app, state))
                .await
            {
                Ok(snapshot) => apps.push(snapshot),
                Err(err) => {
                    tracing::warn!(app = %app.id, error = %err, "cannot read the state a new decision log file starts with");
                    return false;
                }
            }
        }
        apps.sort_by_key(|snapshot| snapshot.app);
        log.record(Entry::state(now, apps));
        true
    }
}
