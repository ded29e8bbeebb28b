//! One callback, start to finish: who is calling, what they sent, what the router says, and
//! the fallback when the router cannot say in time.

use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use axum::body::Body;
use handoff_core::{Config, config::ConfigError};
use http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::{
    auth::Apps,
    error::GatewayError,
    router_client::RouterClient,
    tencent::{self, CallbackQuery, CallbackResponse},
    translate,
};

/// How long a callback body may take to arrive: Tencent gives up after 2 s anyway.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The gateway: the apps it serves and the router it asks.
#[derive(Debug)]
pub struct Gateway {
    apps: ArcSwap<Apps>,
    router: RouterClient,
    path: String,
    max_body_bytes: usize,
}

impl Gateway {
    /// A gateway for `config`'s apps, asking the router at `[gateway] router_url`.
    pub fn from_config(config: &Config) -> Result<Self, GatewayError> {
        let gateway = &config.gateway;
        Ok(Self {
            apps: ArcSwap::from_pointee(Apps::from_config(config)),
            router: RouterClient::new(&gateway.router_url, gateway.router_timeout.get())?,
            path: gateway.path.clone(),
            max_body_bytes: gateway.max_body_bytes,
        })
    }

    /// Takes the apps (tokens, fallback groups, clock skew) of a reloaded `config`; the
    /// listener, path and router settings keep their values until the next start.
    pub fn reload(&self, config: &Config) -> Result<(), ConfigError> {
        self.apps
            .store(std::sync::Arc::new(Apps::from_config(config)));
        Ok(())
    }

    /// The path callbacks are POSTed to.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The router this gateway asks.
    pub fn router(&self) -> &RouterClient {
        &self.router
    }

    /// Answers one callback.
    pub async fn on_callback(
        &self,
        raw_query: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<CallbackResponse, GatewayError> {
        let started = Instant::now();
        let query = CallbackQuery::parse(raw_query);
        let apps = self.apps.load();
        let app = apps.authenticate(&query, SystemTime::now())?;
        let body = self.read_body(headers, body).await?;
        let callback = tencent::parse_assign_human(&query, &body)?;
        let session = callback.session_id.clone();
        let request = translate::to_request(app, &query, callback);
        let answer = match self.router.assign_human(request).await {
            Ok(response) => translate::from_response(response),
            Err(err) => Err(err),
        };
        let elapsed_ms = started.elapsed().as_millis();
        match answer {
            Ok(response) => {
                tracing::info!(
                    app = %app.id,
                    %session,
                    group = response.agent_group_id,
                    agents = response.agent_id_list.len(),
                    elapsed_ms,
                    "callback answered"
                );
                Ok(response)
            }
            Err(err) => {
                let answer = translate::fallback(app, err.clone());
                tracing::warn!(
                    app = %app.id,
                    %session,
                    error = %err,
                    fallback = answer.is_ok(),
                    elapsed_ms,
                    "router failed"
                );
                answer
            }
        }
    }

    /// Reads the body, refusing it once it passes `max_body_bytes` or takes too long.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<bytes::Bytes, GatewayError> {
        let too_large = GatewayError::BodyTooLarge(self.max_body_bytes);
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes as u64) {
            return Err(too_large);
        }
        let collect = Limited::new(body, self.max_body_bytes).collect();
        match tokio::time::timeout(BODY_READ_TIMEOUT, collect).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
            Ok(Err(err)) => Err(GatewayError::BadRequest(format!(
                "cannot read the body: {err}"
            ))),
            Err(_) => Err(GatewayError::BodyTimeout(BODY_READ_TIMEOUT)),
        }
    }
}
