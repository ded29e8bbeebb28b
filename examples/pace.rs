//! A paced load for `bench/load.sh`: signed OnAssignHuman callbacks at a fixed rate (each a
//! new session), with latency measured from when each request was due, not when it left, so
//! a stall shows in the percentiles instead of slowing the load down.
//!
//! `cargo run --release --example pace -- URL RATE SECONDS TOKEN`
//! prints `PACED <achieved/s> <p50 ms> <p99 ms> <p99.9 ms> <errors>`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sha2::{Digest, Sha256};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, rate, seconds, token] = args.as_slice() else {
        return Err("usage: pace URL RATE SECONDS TOKEN".into());
    };
    let rate: u64 = rate.parse()?;
    let seconds: u64 = seconds.parse()?;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http::<Full<Bytes>>();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity((rate * seconds) as usize)));
    let errors = Arc::new(Mutex::new(0u64));
    let start = Instant::now();
    let total = rate * seconds;
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + Duration::from_micros(n * 1_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)?
            .as_secs()
            .to_string();
        let sign = hex::encode(Sha256::digest(format!("{token}{now}")));
        let url = format!(
            "{base}/?SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json&Sign={sign}&RequestTime={now}"
        );
        let body = format!(
            r#"{{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"paced-{n}","ClientUserId":"user-{n}","EventTime":1670574414123}}"#
        );
        let (client, latencies, errors) = (client.clone(), latencies.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let request = http::Request::post(url)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)));
            let ok = match request {
                Ok(request) => match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.into_body().collect().await.map(|b| b.to_bytes());
                        status.is_success()
                            && body.is_ok_and(|b| b.windows(4).any(|w| w == b"\"OK\""))
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            };
            let elapsed = due.elapsed().as_micros() as u64;
            if ok {
                latencies.lock().map(|mut l| l.push(elapsed)).ok();
            } else {
                errors.lock().map(|mut e| *e += 1).ok();
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies = latencies.lock().map_err(|_| "poisoned")?.clone();
    latencies.sort_unstable();
    let pick = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).copied().unwrap_or_default() as f64 / 1000.0
    };
    let errors = *errors.lock().map_err(|_| "poisoned")?;
    println!(
        "PACED {:.0} {:.2} {:.2} {:.2} {errors}",
        latencies.len() as f64 / elapsed,
        pick(0.50),
        pick(0.99),
        pick(0.999)
    );
    Ok(())
}
