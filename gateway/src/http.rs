//! The axum routes: the callback path, `/healthz`, `/readyz`, and Tencent-shaped JSON for
//! every path or method that is not served. Every response the gateway sends is built here.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, Method, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use handoff_core::throttle::Throttle;

use crate::{
    callback::Gateway,
    error::GatewayError,
    tencent::{CallbackResponse, Encoded},
};

impl IntoResponse for CallbackResponse {
    fn into_response(self) -> Response {
        Encoded::from(&self).into_response()
    }
}

impl IntoResponse for Encoded {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = CallbackResponse::fail(self.error_code(), self.to_string());
        (self.status(), body).into_response()
    }
}

/// The gateway's HTTP routes.
pub fn routes(gateway: Arc<Gateway>) -> Router {
    let path = gateway.path().to_owned();
    Router::new()
        .route(&path, post(callback))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gateway)
}

async fn callback(
    State(gateway): State<Arc<Gateway>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let query = query.unwrap_or_default();
    match gateway.on_callback(&query, &headers, body).await {
        Ok(answer) => answer.into_response(),
        Err(err) => {
            /// Refusals logged: a flood of bad requests writes a few lines a second.
            static REFUSALS: Throttle = Throttle::new(10);
            if let Some(left_out) = REFUSALS.admit() {
                tracing::info!(error = %err, code = err.error_code(), left_out, "callback refused");
            }
            err.into_response()
        }
    }
}

/// Alive: the process answers HTTP.
async fn healthz() -> Response {
    CallbackResponse::ok().into_response()
}

/// Ready: the router answers its health check.
async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.router().ready().await {
        Ok(()) => CallbackResponse::ok().into_response(),
        Err(err) => err.into_response(),
    }
}

/// The gateway's counters, in Prometheus text.
async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    (content_type, gateway.counters().exposition()).into_response()
}

async fn not_found(uri: Uri) -> Response {
    GatewayError::NotFound(uri.path().to_owned()).into_response()
}

async fn method_not_allowed(method: Method) -> Response {
    GatewayError::MethodNotAllowed(method.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::{body::Body, http::Request};
    use handoff_proto::{
        fake::{AssignHuman, AssignOnly},
        router::v1::{AssignHumanRequest, AssignHumanResponse},
    };
    use http::{StatusCode, header};
    use http_body_util::BodyExt;
    use tonic_health::server::{HealthReporter, HealthService};
    use tower::ServiceExt;

    use super::*;
    use crate::router_client::RouterClient;

    /// The router is never reached in these tests: nothing listens on port 1.
    const CONFIG: &str = r#"
        [gateway]
        router_url = "http://127.0.0.1:1"
        router_timeout = "300ms"
        path = "/tencent/callback"
        [[apps]]
        sdk_app_id = 1400000001
        token = "xxxxyyyy"
        [[apps]]
        sdk_app_id = 1400000002
        fallback_group_id = 6521
    "#;

    const BODY: &str = r#"{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"s-1","ClientUserId":"u-1","EventTime":1670574414123}"#;

    /// A router that panics on every call, as a bug in it would.
    #[derive(Clone)]
    struct Panics;

    #[tonic::async_trait]
    impl AssignHuman for Panics {
        async fn assign_human(
            &self,
            _: tonic::Request<AssignHumanRequest>,
        ) -> Result<tonic::Response<AssignHumanResponse>, tonic::Status> {
            panic!("a bug in the router")
        }
    }

    #[tokio::test]
    async fn a_router_panicking_in_process_fails_the_call_not_the_connection()
    -> Result<(), Box<dyn std::error::Error>> {
        let config = handoff_core::config::parse(CONFIG, Path::new("t.toml"), Vec::new())?;
        let health = HealthService::from_health_reporter(HealthReporter::default());
        let timeout = std::time::Duration::from_millis(300);
        let router =
            RouterClient::in_process(Arc::new(AssignOnly(Panics)), Arc::new(health), timeout);
        let app = routes(Arc::new(Gateway::with_router(&config, router)));
        let request = Request::builder()
            .method(Method::POST)
            .uri("/tencent/callback?SdkAppid=1400000002&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json")
            .body(Body::from(BODY))?;
        let response = app.oneshot(request).await?;
        assert_eq!(response.status(), StatusCode::OK);
        let json: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
        assert_eq!(json["ActionStatus"], "OK", "{json}");
        assert_eq!(
            json["AgentGroupId"], 6521,
            "the app's fallback group answers"
        );
        Ok(())
    }

    /// A router that takes longer than any deadline, and says whether it ever finished.
    #[derive(Clone)]
    struct Slow(Arc<std::sync::atomic::AtomicBool>);

    #[tonic::async_trait]
    impl AssignHuman for Slow {
        async fn assign_human(
            &self,
            _: tonic::Request<AssignHumanRequest>,
        ) -> Result<tonic::Response<AssignHumanResponse>, tonic::Status> {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(tonic::Response::new(AssignHumanResponse::default()))
        }
    }

    #[tokio::test]
    async fn an_in_process_call_past_its_deadline_is_cancelled()
    -> Result<(), Box<dyn std::error::Error>> {
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let health = HealthService::from_health_reporter(HealthReporter::default());
        let timeout = std::time::Duration::from_millis(50);
        let slow = Arc::new(AssignOnly(Slow(finished.clone())));
        let router = RouterClient::in_process(slow, Arc::new(health), timeout);
        let status = router
            .assign_human(
                AssignHumanRequest::default(),
                std::time::Instant::now() + timeout * 10,
            )
            .await
            .err()
            .ok_or("answered after its deadline")?;
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        assert!(
            !finished.load(std::sync::atomic::Ordering::SeqCst),
            "the router went on after the gateway gave up"
        );
        Ok(())
    }

    fn app() -> Result<Router, Box<dyn std::error::Error>> {
        let config = handoff_core::config::parse(CONFIG, Path::new("t.toml"), Vec::new())?;
        Ok(routes(Arc::new(Gateway::from_config(&config)?)))
    }

    async fn call(
        method: Method,
        uri: &str,
        body: impl Into<Body>,
    ) -> Result<(StatusCode, serde_json::Value), Box<dyn std::error::Error>> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())?;
        let response = app()?.oneshot(request).await?;
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        assert_eq!(
            content_type.as_ref().map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes)?))
    }

    /// `&Sign=..&RequestTime=..` for app 1400000001 now.
    fn signed_params() -> Result<String, std::time::SystemTimeError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            .to_string();
        let sign = crate::auth::sign("xxxxyyyy", &now);
        Ok(format!("&Sign={sign}&RequestTime={now}"))
    }

    fn callback_uri(app: &str, extra: &str) -> String {
        format!(
            "/tencent/callback?SdkAppid={app}&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json{extra}"
        )
    }

    #[tokio::test]
    async fn every_refusal_is_tencent_shaped_with_its_status()
    -> Result<(), Box<dyn std::error::Error>> {
        let signed = signed_params()?;
        let huge = format!("{{\"Pad\":\"{}\"}}", "x".repeat(70 * 1024));
        let cases: Vec<(Method, String, String, u16, u64)> = vec![
            (
                Method::POST,
                callback_uri("1400000009", ""),
                BODY.into(),
                403,
                2001,
            ),
            (
                Method::POST,
                "/tencent/callback".into(),
                BODY.into(),
                400,
                1001,
            ),
            (
                Method::POST,
                callback_uri("1400000001", ""),
                BODY.into(),
                401,
                2002,
            ),
            (
                Method::POST,
                callback_uri("1400000001", "&Sign=00&RequestTime=1"),
                BODY.into(),
                401,
                2004,
            ),
            (
                Method::POST,
                callback_uri("1400000001", &signed),
                huge,
                413,
                1004,
            ),
            (
                Method::POST,
                callback_uri("1400000001", &signed),
                "{".into(),
                400,
                1001,
            ),
            (
                Method::POST,
                callback_uri("1400000001", &signed),
                BODY.replace("OnAssignHuman", "OnAssignAgent2"),
                400,
                1002,
            ),
            (
                Method::GET,
                callback_uri("1400000001", &signed),
                String::new(),
                405,
                1007,
            ),
            (Method::POST, "/elsewhere".into(), BODY.into(), 404, 1006),
        ];
        for (method, uri, body, status, code) in cases {
            let (got, json) = call(method, &uri, body).await?;
            assert_eq!(got.as_u16(), status, "{uri}: {json}");
            assert_eq!(json["ActionStatus"], "FAIL", "{uri}");
            assert_eq!(json["ErrorCode"], code, "{uri}: {json}");
            assert!(
                json["ErrorInfo"]
                    .as_str()
                    .is_some_and(|info| !info.is_empty())
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn router_down_answers_the_fallback_group_or_fails_clearly()
    -> Result<(), Box<dyn std::error::Error>> {
        let (status, json) = call(Method::POST, &callback_uri("1400000002", ""), BODY).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["ActionStatus"], "OK");
        assert_eq!(json["AgentGroupId"], 6521);
        let signed = signed_params()?;
        let (status, json) = call(Method::POST, &callback_uri("1400000001", &signed), BODY).await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
        assert_eq!(json["ErrorCode"], 3001);
        Ok(())
    }

    #[tokio::test]
    async fn health_is_alive_and_readiness_needs_the_router()
    -> Result<(), Box<dyn std::error::Error>> {
        let (status, json) = call(Method::GET, "/healthz", Body::empty()).await?;
        assert_eq!(
            (status, &json["ActionStatus"]),
            (StatusCode::OK, &"OK".into())
        );
        let (status, json) = call(Method::GET, "/readyz", Body::empty()).await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
        Ok(())
    }
}
