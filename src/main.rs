//! `handoff --config FILE`: the router and the gateway in one process, for trying handoff
//! out and for small deployments. The gateway asks its own router over loopback, whatever
//! `[gateway] router_url` says. On SIGINT or SIGTERM the gateway stops first and drains,
//! then the router.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let about = "the handoff router and its Tencent gateway in one process";
    handoff::launch("handoff", about, handoff::Parts::All).await
}
