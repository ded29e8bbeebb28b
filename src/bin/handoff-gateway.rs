//! `handoff-gateway --config FILE`: Tencent's callback endpoint on `[gateway] listen`,
//! asking the router at `[gateway] router_url`, taking new app tokens and fallback groups
//! on file change and SIGHUP.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let about = "the Tencent Desk callback gateway for the handoff router";
    handoff::launch("handoff-gateway", about, handoff::Parts::Gateway).await
}
