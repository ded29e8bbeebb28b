//! `handoff --config FILE`: the router and the gateway in one process, for trying handoff
//! out and for small deployments. The gateway calls its own router's gRPC services in
//! process, whatever `[gateway] router_url` says; the router still serves gRPC on `[router]
//! listen` for everyone else. On SIGINT or SIGTERM the gateway stops first and drains,
//! then the router. `handoff replay --config NEW.toml --log FILE...` runs a decision log
//! again under another config and reports what would have changed. `handoff desk --config
//! FILE [--app ID]` prints what Tencent Desk holds for each synced app and how it differs
//! from the file.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.next_if(|first| first == "replay").is_some() {
        return handoff::replay::main(args).await;
    }
    if args.next_if(|first| first == "desk").is_some() {
        return handoff::desk::main(args).await;
    }
    let about = "the handoff router and its Tencent gateway in one process";
    handoff::launch("handoff", about, handoff::Parts::All).await
}
