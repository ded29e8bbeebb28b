//! The two-process shape's ceiling: the load run's bare ceiling (`ceiling.rs`) that also
//! makes the one gRPC call the gateway makes, `AssignHuman` over a tonic channel, to a bare
//! tonic server answering a constant decision of the router's size. What the gateway and
//! router apart cost beyond this is handoff's; what this costs beyond `ceiling.rs` is the
//! hop itself (HTTP/2, protobuf, tonic, the second process).
//!
//! `cargo run --release -p handoff-gateway --example hop -- echo 127.0.0.1:15090`
//! `cargo run --release -p handoff-gateway --example hop -- ceiling 127.0.0.1:18091 http://127.0.0.1:15090`
//! `cargo run --release -p handoff-gateway --example hop -- ceiling-h2 127.0.0.1:18092 127.0.0.1:15090`
//! (the same call framed by hand over a bare h2 connection: what tonic's channel costs)
//! `cargo run --release -p handoff-gateway --example hop -- ceiling-mux 127.0.0.1:18093 http://127.0.0.1:15090`
//! (the call as the gateway makes it: on one `Multiplex` stream, with the gateway's `Mux`)

use axum::{
    Router,
    body::Bytes,
    extract::{RawQuery, State},
    http::{StatusCode, header},
    routing::post,
};
use std::{sync::Arc, time::Duration};

use handoff_gateway::{
    multiplex::{Mux, Sent},
    tencent::{self, Callback, CallbackQuery},
};
use handoff_proto::{
    fake::{AssignHuman, AssignOnly},
    router::v1::{
        AssignHumanRequest, AssignHumanResponse, Decision,
        router_service_client::RouterServiceClient, router_service_server::RouterServiceServer,
    },
};
use tonic::{
    Request, Response, Status,
    transport::{Channel, Server},
};

const ANSWER: &str = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,"AgentGroupId":1,"AgentIdList":["agent00@example.com","agent01@example.com","agent02@example.com","agent03@example.com","agent04@example.com"]}"#;

/// Answers every `AssignHuman` with the same decision.
#[derive(Clone)]
struct Echo;

#[tonic::async_trait]
impl AssignHuman for Echo {
    async fn assign_human(
        &self,
        _: Request<AssignHumanRequest>,
    ) -> Result<Response<AssignHumanResponse>, Status> {
        Ok(Response::new(AssignHumanResponse {
            agent_group_id: Some(1),
            agent_ids: (0..5).map(|n| format!("agent{n:02}@example.com")).collect(),
            decision: Some(Decision {
                rule: "default".into(),
                reason: "rule default: group 1 (floor), least_loaded: 24 of 24 agents eligible"
                    .into(),
                reserved_agent_id: "agent00@example.com".into(),
                ..Decision::default()
            }),
        }))
    }
}

type Reply = (
    StatusCode,
    [(header::HeaderName, &'static str); 1],
    &'static str,
);
const JSON: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "application/json")];
const REFUSED: Reply = (
    StatusCode::BAD_REQUEST,
    JSON,
    r#"{"ActionStatus":"FAIL","ErrorInfo":"bad request","ErrorCode":1001}"#,
);

/// The callback's `AssignHuman` request, parsed with the gateway's parser.
fn parse(query: Option<String>, body: &[u8]) -> Option<AssignHumanRequest> {
    let query = CallbackQuery::parse(query.as_deref().unwrap_or_default());
    let Ok(Callback::AssignHuman(callback)) = tencent::parse(&query, body) else {
        return None;
    };
    Some(AssignHumanRequest {
        sdk_app_id: query
            .sdk_app_id
            .and_then(|id| id.parse().ok())
            .unwrap_or_default(),
        session_id: callback.session_id.into(),
        client_user_id: callback.client_user_id.into(),
        ..AssignHumanRequest::default()
    })
}

async fn callback(
    State(router): State<RouterServiceClient<Channel>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Reply {
    let Some(request) = parse(query, &body) else {
        return REFUSED;
    };
    match router.clone().assign_human(request).await {
        Ok(_) => (StatusCode::OK, JSON, ANSWER),
        Err(_) => REFUSED,
    }
}

async fn mux_callback(
    State(router): State<Arc<Mux>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Reply {
    let Some(request) = parse(query, &body) else {
        return REFUSED;
    };
    match router
        .call(request, Duration::from_secs(2), Vec::new())
        .await
    {
        Sent::Answered(Ok(_)) => (StatusCode::OK, JSON, ANSWER),
        _ => REFUSED,
    }
}

/// One unary `AssignHuman` over a bare h2 connection: the gRPC framing by hand.
async fn raw_call(
    mut h2: h2::client::SendRequest<Bytes>,
    request: AssignHumanRequest,
) -> Result<AssignHumanResponse, Box<dyn std::error::Error + Send + Sync>> {
    use prost::Message as _;
    let mut body = Vec::with_capacity(5 + request.encoded_len());
    body.push(0);
    body.extend_from_slice(&(request.encoded_len() as u32).to_be_bytes());
    request.encode(&mut body)?;
    let head = http::Request::post("http://router/handoff.router.v1.RouterService/AssignHuman")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    h2 = h2.ready().await?;
    let (response, mut stream) = h2.send_request(head, false)?;
    stream.send_data(Bytes::from(body), true)?;
    let mut body = response.await?.into_body();
    let mut message = bytes::BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        message.extend_from_slice(&chunk);
    }
    let _trailers = body.trailers().await?;
    Ok(AssignHumanResponse::decode(
        message.get(5..).unwrap_or_default(),
    )?)
}

async fn raw_callback(
    State(router): State<h2::client::SendRequest<Bytes>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Reply {
    let Some(request) = parse(query, &body) else {
        return REFUSED;
    };
    match raw_call(router, request).await {
        Ok(_) => (StatusCode::OK, JSON, ANSWER),
        Err(_) => REFUSED,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["echo", addr] => {
            eprintln!("echo router listening on {addr}");
            Server::builder()
                .add_service(RouterServiceServer::new(AssignOnly(Echo)))
                .serve(addr.parse()?)
                .await?;
        }
        ["ceiling", addr, router] => {
            let channel = Channel::from_shared(router.to_string())?
                .tcp_nodelay(true)
                .connect_lazy();
            let listener = tokio::net::TcpListener::bind(addr).await?;
            eprintln!("hop ceiling listening on {}", listener.local_addr()?);
            let app = Router::new()
                .route("/", post(callback))
                .with_state(RouterServiceClient::new(channel));
            axum::serve(listener, app).await?;
        }
        ["ceiling-mux", addr, router] => {
            let channel = Channel::from_shared(router.to_string())?
                .tcp_nodelay(true)
                .connect_lazy();
            let mux = Arc::new(Mux::new(RouterServiceClient::new(channel), None));
            let listener = tokio::net::TcpListener::bind(addr).await?;
            eprintln!("hop ceiling (multiplexed) listening on {}", listener.local_addr()?);
            let app = Router::new().route("/", post(mux_callback)).with_state(mux);
            axum::serve(listener, app).await?;
        }
        ["ceiling-h2", addr, router] => {
            let socket = tokio::net::TcpStream::connect(router).await?;
            socket.set_nodelay(true)?;
            let (h2, connection) = h2::client::handshake(socket).await?;
            tokio::spawn(connection);
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let app = Router::new().route("/", post(raw_callback)).with_state(h2);
            axum::serve(listener, app).await?;
        }
        _ => return Err(
            "usage: hop echo ADDR | hop ceiling ADDR ROUTER_URL | hop ceiling-mux ADDR ROUTER_URL | hop ceiling-h2 ADDR ROUTER_ADDR"
                .into(),
        ),
    }
    Ok(())
}
