//! The load run's ceiling: a bare axum server that reads the same signed callback the gateway
//! reads (query and JSON body, parsed by the gateway's own `tencent::parse`) and answers a
//! constant Tencent JSON, with no authentication, no router and no state. Whatever the real
//! path costs beyond this is handoff's.
//!
//! `cargo run --release -p handoff-gateway --example ceiling -- 127.0.0.1:18090`

use axum::{
    Router,
    body::Bytes,
    extract::RawQuery,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::post,
};
use handoff_gateway::tencent::{self, CallbackQuery};

const ANSWER: &str = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,"AgentGroupId":1,"AgentIdList":["agent00@example.com","agent01@example.com","agent02@example.com","agent03@example.com","agent04@example.com"]}"#;

async fn callback(RawQuery(query): RawQuery, body: Bytes) -> impl IntoResponse {
    let query = CallbackQuery::parse(query.as_deref().unwrap_or_default());
    let json = [(header::CONTENT_TYPE, "application/json")];
    match tencent::parse(&query, &body) {
        Ok(_) => (StatusCode::OK, json, ANSWER),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            json,
            r#"{"ActionStatus":"FAIL","ErrorInfo":"bad request","ErrorCode":1001}"#,
        ),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("ceiling listening on {}", listener.local_addr()?);
    axum::serve(listener, Router::new().route("/", post(callback))).await
}
