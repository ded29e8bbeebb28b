//! `handoff-router --config FILE`: the gRPC routing service (`handoff.router.v1`) on
//! `[router] listen`, reloading its config on file change and SIGHUP.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let about = "the handoff routing service (gRPC handoff.router.v1)";
    handoff::launch("handoff-router", about, handoff::Parts::Router).await
}
