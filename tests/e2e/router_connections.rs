//! The router's own listener under strangers: its slots are capped, a connection that never
//! becomes HTTP/2 or never makes a call the access check lets through is closed after
//! `preface_timeout` (refused calls do not keep it), and a caller with a token keeps its
//! connection while it works.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use handoff_proto::router::v1::{ListAgentsRequest, router_service_client::RouterServiceClient};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tonic::{Request, transport::Endpoint};

use crate::{
    connections::closed_within,
    support::{CONFIG, Error, TestResult, launch},
};

const TOKEN: &str = "crm-token-0123456789abc";

/// The tests' floor with one token, and the router's slots and timeouts made small.
async fn router() -> Result<(crate::support::Running, std::net::SocketAddr), Error> {
    let config = format!(
        "{CONFIG}\n[[router.auth.tokens]]\nname = \"crm\"\ntoken = \"{TOKEN}\"\ngrants = [\"all\"]\n"
    );
    let env = [
        ("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned()),
        ("HANDOFF__ROUTER__MAX_CONNECTIONS", "3".to_owned()),
        ("HANDOFF__ROUTER__PREFACE_TIMEOUT", "500ms".to_owned()),
        ("HANDOFF__ROUTER__IDLE_TIMEOUT", "1s".to_owned()),
    ];
    let running = launch(&config, &env, true, false).await?;
    let grpc = running.router.ok_or("no router")?;
    Ok((running, grpc))
}

#[tokio::test]
async fn the_routers_slots_are_capped_and_a_silent_stranger_holds_one_briefly() -> TestResult {
    let (running, grpc) = router().await?;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(grpc).await?);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The fourth finds no slot: closed on arrival.
    let mut fourth = TcpStream::connect(grpc).await?;
    assert!(closed_within(&mut fourth, Duration::from_millis(400)).await);
    // The silent three are closed once preface_timeout has passed.
    for stream in &mut silent {
        assert!(closed_within(stream, Duration::from_secs(3)).await);
    }
    // One that says HTTP/2 and then nothing more is closed alike.
    let mut prefaced = TcpStream::connect(grpc).await?;
    prefaced
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await?;
    assert!(!closed_within(&mut prefaced, Duration::from_millis(200)).await);
    assert!(closed_within(&mut prefaced, Duration::from_secs(3)).await);
    running.shutdown().await
}

/// A client of the router that counts the connections it had to open.
async fn counting_client(
    grpc: std::net::SocketAddr,
) -> Result<
    (
        RouterServiceClient<tonic::transport::Channel>,
        Arc<AtomicUsize>,
    ),
    Error,
> {
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&opened);
    let connector = tower::service_fn(move |_: http::Uri| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let tcp = TcpStream::connect(grpc).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tcp))
        }
    });
    let channel = Endpoint::from_shared(format!("http://{grpc}"))?
        .connect_with_connector(connector)
        .await?;
    Ok((RouterServiceClient::new(channel), opened))
}

fn list(token: Option<&str>) -> Result<Request<ListAgentsRequest>, Error> {
    let mut request = Request::new(ListAgentsRequest {
        sdk_app_id: 1_400_000_001,
        group_id: None,
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse()?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

#[tokio::test]
async fn refused_calls_do_not_keep_a_connection_but_a_working_caller_keeps_its_own() -> TestResult {
    let (running, grpc) = router().await?;
    let (mut stranger, stranger_opened) = counting_client(grpc).await?;
    let (mut caller, caller_opened) = counting_client(grpc).await?;
    // Two seconds of calls, one every 100 ms: the stranger's are all refused, so its
    // connection is closed every preface_timeout and opened again; the caller's pass.
    for _ in 0..20 {
        let refused = stranger.list_agents(list(None)?).await;
        assert!(refused.is_err());
        caller.list_agents(list(Some(TOKEN))?).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(caller_opened.load(Ordering::SeqCst), 1);
    let reopened = stranger_opened.load(Ordering::SeqCst);
    assert!(
        reopened >= 3,
        "the stranger's connection was opened {reopened} times"
    );
    // A caller idle past idle_timeout loses its connection, and its channel opens another.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    caller.list_agents(list(Some(TOKEN))?).await?;
    assert_eq!(caller_opened.load(Ordering::SeqCst), 2);
    running.shutdown().await
}
