//! What the ledger of answered signed requests costs a callback: digesting its query and
//! body, looking it up, and remembering it with its answer, against the parse of the same
//! callback that every callback pays anyway (the ceiling's work).
//!
//! `cargo bench -p handoff-gateway --bench ledger`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use handoff_core::id::SdkAppId;
use handoff_gateway::{
    ledger::{Ledger, Request},
    tencent::{self, CallbackQuery},
};

const QUERY: &str = "SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json&ClientIP=203.0.113.7&OptPlatform=iOS&Sign=17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061&RequestTime=1669872112";

fn body(n: u64) -> Vec<u8> {
    format!(
        r#"{{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"load-0-{n}","ClientUserId":"user-load-0-{n}","EventTime":1670574414123}}"#
    )
    .into_bytes()
}

fn benches(c: &mut Criterion) {
    let app = SdkAppId::new(1_400_000_001).unwrap_or_else(|_| unreachable!());
    let mut group = c.benchmark_group("callback");
    let mut n = 0u64;
    group.bench_function("parse (every callback: the baseline)", |b| {
        b.iter(|| {
            n += 1;
            let query = CallbackQuery::parse(QUERY);
            tencent::parse(&query, &body(n)).map(|_| ())
        })
    });
    group.bench_function("ledger: digest alone", |b| {
        b.iter(|| {
            n += 1;
            Request::of(app, QUERY, &body(n))
        })
    });
    // A full ledger: its oldest is forgotten at every new request, as under load.
    let ledger = Ledger::default();
    let now = Instant::now();
    for n in 0..handoff_gateway::ledger::MAX_ENTRIES as u64 {
        ledger.record(
            Request::of(app, QUERY, &body(u64::MAX - n)),
            now,
            Duration::from_secs(3600),
        );
    }
    group.bench_function("ledger: digest, look up, remember", |b| {
        b.iter(|| {
            n += 1;
            let body = body(n);
            let request = Request::of(app, QUERY, &body);
            let seen = ledger.answered(request, now);
            ledger.record(request, now, Duration::from_secs(3600));
            seen
        })
    });
    group.finish();
}

criterion_group! {
    name = ledger;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(ledger);
