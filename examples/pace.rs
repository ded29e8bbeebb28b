//! A paced load for `bench/load.sh`: signed OnAssignHuman callbacks at a fixed rate (each a
//! new session), with latency measured from when each request was due, not when it left, so
//! a stall shows in the percentiles instead of slowing the load down.
//!
//! The pacing runs on a thread of its own with the operating system's sleep (tens of
//! microseconds late at most), not on tokio's timer, whose millisecond ticks would count up
//! to a millisecond of the pacer's own lateness into every latency.
//!
//! `cargo run --release --example pace -- URL RATE SECONDS TOKEN`
//! prints `PACED <achieved/s> <p50 ms> <p99 ms> <p99.9 ms> <errors>`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What every request shares: where to send, how to sign, and what was measured.
struct Load {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
    latencies: Mutex<Vec<u64>>,
    errors: Mutex<u64>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, rate, seconds, token] = args.as_slice() else {
        return Err("usage: pace URL RATE SECONDS TOKEN".into());
    };
    let rate: u64 = rate.parse()?;
    let total = rate * seconds.parse::<u64>()?;
    let load = Arc::new(Load {
        client: Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build_http(),
        base: base.clone(),
        token: token.clone(),
        latencies: Mutex::new(Vec::with_capacity(total as usize)),
        errors: Mutex::new(0),
    });
    let start = Instant::now();
    let runtime = tokio::runtime::Handle::current();
    let pacer = {
        let load = load.clone();
        std::thread::spawn(move || {
            (0..total)
                .map(|n| {
                    let due = start + Duration::from_micros(n * 1_000_000 / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    runtime.spawn(send(load.clone(), n, due))
                })
                .collect::<Vec<JoinHandle<()>>>()
        })
    };
    let tasks = pacer.join().map_err(|_| "the pacer panicked")?;
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies = load.latencies.lock().map_err(|_| "poisoned")?.clone();
    latencies.sort_unstable();
    let pick = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).copied().unwrap_or_default() as f64 / 1000.0
    };
    let errors = *load.errors.lock().map_err(|_| "poisoned")?;
    println!(
        "PACED {:.0} {:.2} {:.2} {:.2} {errors}",
        latencies.len() as f64 / elapsed,
        pick(0.50),
        pick(0.99),
        pick(0.999)
    );
    Ok(())
}

/// Sends callback `n`, due at `due`, and records how long after `due` its answer came.
async fn send(load: Arc<Load>, n: u64, due: Instant) {
    let ok = answered(&load, n).await.unwrap_or(false);
    let elapsed = due.elapsed().as_micros() as u64;
    if ok {
        load.latencies.lock().map(|mut l| l.push(elapsed)).ok();
    } else {
        load.errors.lock().map(|mut e| *e += 1).ok();
    }
}

/// Whether callback `n` was answered 200 with `"ActionStatus":"OK"`.
async fn answered(load: &Load, n: u64) -> Result<bool, Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let sign = hex::encode(Sha256::digest(format!("{}{now}", load.token)));
    let url = format!(
        "{}/?SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json&Sign={sign}&RequestTime={now}",
        load.base
    );
    let body = format!(
        r#"{{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"paced-{n}","ClientUserId":"user-{n}","EventTime":1670574414123}}"#
    );
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = load.client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(status.is_success() && body.windows(4).any(|w| w == b"\"OK\""))
}
