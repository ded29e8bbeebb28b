//! `handoff --config FILE`: the router and the gateway in one process, for trying handoff
//! out and for small deployments. The gateway calls its own router's gRPC services in
//! process, whatever `[gateway] router_url` says; the router still serves gRPC on `[router]
//! listen` for everyone else. On SIGINT or SIGTERM the gateway stops first and drains,
//! then the router.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let about = "the handoff router and its Tencent gateway in one process";
    handoff::launch("handoff", about, handoff::Parts::All).await
}
