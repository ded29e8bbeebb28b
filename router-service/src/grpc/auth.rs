//! Who may call the router's gRPC port: bearer tokens from `[router.auth]`, each granting
//! groups of methods or single ones, checked in front of every service on the listener
//! ([`Guard`]). A call without a valid token is UNAUTHENTICATED, one whose token does not
//! grant its method PERMISSION_DENIED. Tokens are compared in constant time, every one of
//! them every time. The all-in-one's gateway calls the router in process, past the
//! listener: it needs no token.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use handoff_core::config::{METHOD_GROUPS, RouterAuth};
use handoff_proto::router::v1::router_service_server::SERVICE_NAME;
use subtle::ConstantTimeEq as _;
use tonic::Status;

use prometheus_client::metrics::{counter::Counter, family::Family};

use crate::metrics::RejectionLabels;

/// A caller and what it may call.
struct Caller {
    name: CallerName,
    token: Vec<u8>,
    /// Router methods it may call (`None`: all).
    methods: Option<HashSet<&'static str>>,
}

/// The name of the router token a call came with (`[[router.auth.tokens]] name`), which
/// the guard attaches to each call it lets through: who changed what, in the log and the
/// decision log. Never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerName(pub Arc<str>);

/// The access policy as the config has it now: what the listener's guard checks, swapped
/// whole by a reload (`[router.auth]` is live).
#[derive(Clone)]
pub struct Policy(Arc<ArcSwap<Access>>);

impl Policy {
    /// The policy `auth` sets.
    pub fn from_config(auth: &RouterAuth) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(Access::from_config(auth))))
    }

    /// Takes `auth` from a reloaded config: the next call is checked against it.
    pub fn reload(&self, auth: &RouterAuth) {
        self.0.store(Arc::new(Access::from_config(auth)));
    }

    /// The policy now.
    pub fn load(&self) -> arc_swap::Guard<Arc<Access>> {
        self.0.load()
    }
}

/// The access policy `[router.auth]` sets.
pub struct Access {
    callers: Vec<Caller>,
    open_health: bool,
    open_reflection: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.callers.iter().map(|c| &*c.name.0).collect();
        f.debug_struct("Access")
            .field("callers", &names)
            .field("open_health", &self.open_health)
            .field("open_reflection", &self.open_reflection)
            .finish()
    }
}

/// A router method by name, as the static name metrics use.
fn method_name(method: &str) -> Option<&'static str> {
    METHOD_GROUPS
        .iter()
        .flat_map(|(_, methods)| methods.iter())
        .find(|known| **known == method)
        .copied()
}

impl Access {
    /// The policy `auth` describes (validated with the config).
    pub fn from_config(auth: &RouterAuth) -> Self {
        let callers = auth
            .tokens
            .iter()
            .map(|token| {
                let all = token.grants.iter().any(|grant| grant == "all");
                let methods = (!all).then(|| {
                    token
                        .grants
                        .iter()
                        .flat_map(|grant| {
                            METHOD_GROUPS
                                .iter()
                                .filter(move |(group, _)| group == grant)
                                .flat_map(|(_, methods)| methods.iter().copied())
                                .chain(method_name(grant))
                        })
                        .collect()
                });
                Caller {
                    name: CallerName(Arc::from(token.name.as_str())),
                    token: token.token.expose().as_bytes().to_vec(),
                    methods,
                }
            })
            .collect();
        Self {
            callers,
            open_health: auth.open_health,
            open_reflection: auth.open_reflection,
        }
    }

    /// Whether anyone who reaches the port may call anything.
    pub fn is_open(&self) -> bool {
        self.callers.is_empty()
    }

    /// The caller `token` is the token of (every token compared, in constant time), and
    /// whether it may call each of `methods`: what the console signs in with, asked again
    /// at every page, so that a reload that removes a token or a grant takes it away at once.
    pub fn caller<const N: usize>(
        &self,
        token: &[u8],
        methods: [&str; N],
    ) -> Option<(CallerName, [bool; N])> {
        let mut found = None;
        for caller in &self.callers {
            if bool::from(caller.token.as_slice().ct_eq(token)) {
                found = Some(caller);
            }
        }
        let caller = found?;
        let may = methods.map(|method| {
            caller
                .methods
                .as_ref()
                .is_none_or(|granted| granted.contains(method))
        });
        Some((caller.name.clone(), may))
    }

    /// Whether a call to `path` (`/package.Service/Method`) carrying `authorization` may
    /// go on, and under which caller's name (none on an open port, or for an open health
    /// check or reflection).
    pub fn check(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
    ) -> Result<Option<CallerName>, Status> {
        if self.is_open() {
            return Ok(None);
        }
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let health = service.starts_with("grpc.health.");
        let reflection = service.starts_with("grpc.reflection.");
        if (health && self.open_health) || (reflection && self.open_reflection) {
            return Ok(None);
        }
        self.authorize((service == SERVICE_NAME).then_some(method), authorization)
    }

    /// Whether a call of the router service's `method` carrying `authorization` may go on,
    /// and under which caller's name: what [`Access::check`] says of its path, for a call
    /// that arrives inside a `Multiplex` stream rather than as a stream of its own.
    pub fn check_method(
        &self,
        method: &str,
        authorization: Option<&[u8]>,
    ) -> Result<Option<CallerName>, Status> {
        if self.is_open() {
            return Ok(None);
        }
        self.authorize(Some(method), authorization)
    }

    /// The caller `authorization` names, if it may call `method` of the router service
    /// (`None`: a method of another service, which any valid token may call).
    fn authorize(
        &self,
        method: Option<&str>,
        authorization: Option<&[u8]>,
    ) -> Result<Option<CallerName>, Status> {
        let token = authorization
            .and_then(|value| {
                let scheme = value.get(..7)?;
                scheme
                    .eq_ignore_ascii_case(b"bearer ")
                    .then(|| value.get(7..))?
            })
            .map(<[u8]>::trim_ascii)
            .ok_or_else(|| Status::unauthenticated("a bearer token is required"))?;
        // Every token is compared, whichever matches, so the time taken says nothing.
        let mut found = None;
        for caller in &self.callers {
            if bool::from(caller.token.as_slice().ct_eq(token)) {
                found = Some(caller);
            }
        }
        let caller = found.ok_or_else(|| Status::unauthenticated("the token is not valid"))?;
        let Some(method) = method else {
            return Ok(Some(caller.name.clone()));
        };
        match &caller.methods {
            Some(methods) if !methods.contains(method) => Err(Status::permission_denied(format!(
                "caller {:?} may not call {method}",
                &*caller.name.0
            ))),
            _ => Ok(Some(caller.name.clone())),
        }
    }
}

/// The tower layer in front of the listener's services.
#[derive(Clone)]
pub struct GuardLayer {
    access: Policy,
    rejections: Family<RejectionLabels, Counter>,
}

impl GuardLayer {
    /// Checks calls against `access` as it is at each call, counting refusals in
    /// `rejections`.
    pub fn new(access: Policy, rejections: Family<RejectionLabels, Counter>) -> Self {
        Self { access, rejections }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            layer: self.clone(),
        }
    }
}

/// The guard around the listener's services.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

type Refusal<E> =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Guard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Refusal<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes);
        let path = request.uri().path();
        match self.layer.access.load().check(path, authorization) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                let method = path.rsplit('/').next().and_then(method_name);
                tracing::debug!(path, code = ?status.code(), "call refused");
                self.layer
                    .rejections
                    .get_or_create(&RejectionLabels {
                        method: method.unwrap_or("other"),
                        code: super::code_name(status.code()),
                    })
                    .inc();
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use handoff_core::config::{RouterToken, Secret};

    use super::*;

    fn access(open_reflection: bool) -> Access {
        let token = |name: &str, token: &str, grants: &[&str]| RouterToken {
            name: name.to_owned(),
            token: Secret::new(token),
            grants: grants.iter().map(|g| (*g).to_owned()).collect(),
        };
        Access::from_config(&RouterAuth {
            tokens: vec![
                token(
                    "gateway",
                    "gateway-token-0123456789",
                    &["decisions", "SetAgentStatus"],
                ),
                token("crm", "crm-token-0123456789abc", &["management"]),
                token("ops", "ops-token-0123456789abc", &["all"]),
            ],
            open_health: true,
            open_reflection,
        })
    }

    fn path(method: &str) -> String {
        format!("/{SERVICE_NAME}/{method}")
    }

    fn code<T>(result: Result<T, Status>) -> Option<tonic::Code> {
        result.err().map(|status| status.code())
    }

    #[test]
    fn tokens_grant_their_groups_and_methods_and_nothing_else() {
        let access = access(false);
        let bearer = |token: &str| format!("Bearer {token}").into_bytes();
        let gateway = bearer("gateway-token-0123456789");
        let crm = bearer("crm-token-0123456789abc");
        let ops = bearer("ops-token-0123456789abc");
        let call = |method: &str, auth: Option<&Vec<u8>>| {
            code(access.check(&path(method), auth.map(Vec::as_slice)))
        };
        use tonic::Code::{PermissionDenied, Unauthenticated};
        assert_eq!(call("AssignHuman", Some(&gateway)), None);
        assert_eq!(call("SetAgentStatus", Some(&gateway)), None);
        assert_eq!(call("UpsertAgent", Some(&gateway)), Some(PermissionDenied));
        assert_eq!(call("UpsertAgent", Some(&crm)), None);
        assert_eq!(call("AssignHuman", Some(&crm)), Some(PermissionDenied));
        assert_eq!(call("RemoveAgent", Some(&ops)), None);
        assert_eq!(call("AssignHuman", None), Some(Unauthenticated));
        let wrong = bearer("gateway-token-0123456788");
        assert_eq!(call("AssignHuman", Some(&wrong)), Some(Unauthenticated));
        let basic = b"Basic gateway-token-0123456789".to_vec();
        assert_eq!(call("AssignHuman", Some(&basic)), Some(Unauthenticated));
        let lower = b"bearer gateway-token-0123456789".to_vec();
        assert_eq!(call("AssignHuman", Some(&lower)), None);
        // A call let through carries its caller's name, never the token.
        let name = access.check(&path("UpsertAgent"), Some(crm.as_slice()));
        assert_eq!(name.ok().flatten(), Some(CallerName(Arc::from("crm"))));
    }

    #[test]
    fn health_is_open_and_reflection_closed_unless_configured() {
        let health = "/grpc.health.v1.Health/Check";
        let reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
        let closed = access(false);
        assert_eq!(code(closed.check(health, None)), None);
        assert_eq!(
            code(closed.check(reflection, None)),
            Some(tonic::Code::Unauthenticated)
        );
        let crm = b"Bearer crm-token-0123456789abc".to_vec();
        assert_eq!(code(closed.check(reflection, Some(&crm))), None);
        assert_eq!(code(access(true).check(reflection, None)), None);
        let open = Access::from_config(&RouterAuth::default());
        assert!(open.is_open());
        assert_eq!(code(open.check(&path("RemoveAgent"), None)), None);
    }

    #[test]
    fn every_rpc_of_the_service_is_in_exactly_one_group() -> Result<(), Box<dyn std::error::Error>>
    {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(handoff_proto::FILE_DESCRIPTOR_SET)?;
        let service = set
            .file
            .iter()
            .flat_map(|file| file.service.iter().map(move |s| (file.package(), s)))
            .find(|(package, service)| format!("{package}.{}", service.name()) == SERVICE_NAME)
            .map(|(_, service)| service)
            .ok_or("the router service is in the descriptor set")?;
        let rpcs: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert!(rpcs.len() >= 9, "{rpcs:?}");
        for rpc in &rpcs {
            let groups: Vec<&str> = METHOD_GROUPS
                .iter()
                .filter(|(_, methods)| methods.contains(rpc))
                .map(|(group, _)| *group)
                .collect();
            assert_eq!(
                groups.len(),
                1,
                "{rpc} is in groups {groups:?}: add it to one of METHOD_GROUPS"
            );
        }
        for (group, methods) in METHOD_GROUPS {
            for method in methods {
                assert!(
                    rpcs.contains(method),
                    "group {group} names {method}, which the service lacks"
                );
            }
        }
        Ok(())
    }
}
