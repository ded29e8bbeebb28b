//! The gateway's calls to a router elsewhere, multiplexed over one `Multiplex` stream: each
//! call a message with an id, each answer matched back to its caller by that id. A unary
//! call costs an HTTP/2 stream of its own (headers, trailers, a task on each side); on the
//! stream a call is one DATA frame each way, and calls that are ready together leave in
//! one write.
//!
//! The stream is opened on the first call, and again on the first call after it ended;
//! calls wait for the router to accept it before they are sent. A router that refuses it
//! UNIMPLEMENTED (one older than `Multiplex`) has been sent nothing on it, and is called
//! unary from then on: [`Mux::call`] hands the message back for its unary rpc. When the
//! stream ends OK (the router is stopping) the calls it had not answered were never
//! started; they fail UNAVAILABLE, as calls to a stopping router do, and so do the calls in
//! flight on a stream that breaks.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use handoff_proto::{
    multiplex,
    router::v1::{
        AssignHumanRequest, AssignHumanResponse, MultiplexRequest, ReportSessionEventRequest,
        ReportSessionEventResponse, SetAgentStatusRequest, SetAgentStatusResponse,
        multiplex_request::Call, multiplex_response::Result as Answer,
        router_service_client::RouterServiceClient,
    },
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{
    Status,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

/// A request the gateway may send on the stream, and how its answer comes back.
pub trait Multiplexed: Sized {
    /// The unary rpc's answer.
    type Response;
    /// The request as a call on the stream.
    fn call(self) -> Call;
    /// The answer, if it is of this call's kind.
    fn response(answer: Answer) -> Option<Self::Response>;
}

impl Multiplexed for AssignHumanRequest {
    type Response = AssignHumanResponse;
    fn call(self) -> Call {
        Call::AssignHuman(self)
    }
    fn response(answer: Answer) -> Option<Self::Response> {
        match answer {
            Answer::AssignHuman(response) => Some(response),
            _ => None,
        }
    }
}

impl Multiplexed for ReportSessionEventRequest {
    type Response = ReportSessionEventResponse;
    fn call(self) -> Call {
        Call::ReportSessionEvent(self)
    }
    fn response(answer: Answer) -> Option<Self::Response> {
        match answer {
            Answer::ReportSessionEvent(response) => Some(response),
            _ => None,
        }
    }
}

impl Multiplexed for SetAgentStatusRequest {
    type Response = SetAgentStatusResponse;
    fn call(self) -> Call {
        Call::SetAgentStatus(self)
    }
    fn response(answer: Answer) -> Option<Self::Response> {
        match answer {
            Answer::SetAgentStatus(response) => Some(response),
            _ => None,
        }
    }
}

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Asked for; the router has not answered yet.
    Opening,
    /// The router accepted it: calls go.
    Open,
    /// Refused, ended or broken: no more calls.
    Closed,
}

/// What became of a call sent on a stream.
enum Outcome {
    /// The router answered it.
    Answered(Answer),
    /// The stream ended or broke before the call was answered.
    Lost(Status),
}

/// One stream: its state, where calls go, and who waits for which answer.
struct Link {
    state: watch::Sender<State>,
    /// Why the stream closed, once it has.
    ended: Mutex<Option<Status>>,
    calls: mpsc::UnboundedSender<MultiplexRequest>,
    waiting: Mutex<Waiting>,
}

/// The callers waiting on a link, and whether it takes calls still.
#[derive(Default)]
struct Waiting {
    callers: HashMap<u64, oneshot::Sender<Outcome>>,
    closed: bool,
}

impl Link {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why calls cannot go on this link any more.
    fn ended(&self) -> Status {
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| Status::unavailable("the call stream to the router ended"))
    }

    /// Takes no calls any more, because of `status`, which every caller still waiting gets.
    fn close(&self, status: Status) {
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner) = Some(status.clone());
        let callers = {
            let mut waiting = self.waiting();
            waiting.closed = true;
            std::mem::take(&mut waiting.callers)
        };
        self.state.send_replace(State::Closed);
        for (_, caller) in callers {
            let _ = caller.send(Outcome::Lost(status.clone()));
        }
    }
}

/// Forgets a caller that stops waiting (its deadline passed) before its answer came.
struct Forget<'a> {
    link: &'a Link,
    call_id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.link.waiting().callers.remove(&self.call_id);
    }
}

/// How a call went.
pub enum Sent<M: Multiplexed> {
    /// Its answer, or how it failed.
    Answered(Result<M::Response, Status>),
    /// Not sent: the router does not serve the stream, and the message goes unary.
    Unary(M),
}

/// The multiplexed stream to one router, reopened as needed; shared by a gateway's calls.
pub struct Mux {
    client: RouterServiceClient<Channel>,
    bearer: Option<MetadataValue<Ascii>>,
    link: Mutex<Option<Arc<Link>>>,
    next_call: AtomicU64,
    /// The router does not serve `Multiplex`.
    unary_only: AtomicBool,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("unary_only", &self.unary_only)
            .finish_non_exhaustive()
    }
}

impl Mux {
    /// Calls over `client`'s channel, the stream opened with `bearer` when given.
    pub fn new(client: RouterServiceClient<Channel>, bearer: Option<MetadataValue<Ascii>>) -> Self {
        Self {
            client,
            bearer,
            link: Mutex::new(None),
            next_call: AtomicU64::new(0),
            unary_only: AtomicBool::new(false),
        }
    }

    /// Sends `message` on the stream, carrying `timeout` and the trace context `trace`,
    /// and waits for its answer.
    pub async fn call<M: Multiplexed>(
        self: &Arc<Self>,
        message: M,
        timeout: Duration,
        trace: Vec<(String, String)>,
    ) -> Sent<M> {
        if self.unary_only.load(Ordering::Relaxed) {
            return Sent::Unary(message);
        }
        let link = self.link();
        let mut state = *link.state.borrow();
        if state == State::Opening {
            let mut opening = link.state.subscribe();
            state = match opening.wait_for(|state| *state != State::Opening).await {
                Ok(state) => *state,
                Err(_) => State::Closed,
            };
        }
        if state == State::Closed {
            if self.unary_only.load(Ordering::Relaxed) {
                return Sent::Unary(message);
            }
            return Sent::Answered(Err(link.ended()));
        }
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (sender, answer) = oneshot::channel();
        {
            let mut waiting = link.waiting();
            if waiting.closed {
                drop(waiting);
                return Sent::Answered(Err(link.ended()));
            }
            waiting.callers.insert(call_id, sender);
        }
        let _forget = Forget {
            link: &link,
            call_id,
        };
        let request = MultiplexRequest {
            call_id,
            timeout: prost_types::Duration::try_from(timeout).ok(),
            trace_context: trace.into_iter().collect(),
            call: Some(message.call()),
        };
        if link.calls.send(request).is_err() {
            // The stream is gone and its task has not closed the link yet: the call never
            // left, and its answer will be the stream's end.
            self.forget(&link);
        }
        Sent::Answered(match answer.await {
            Ok(Outcome::Answered(answer)) => multiplex::status(answer).and_then(|answer| {
                M::response(answer).ok_or_else(|| {
                    Status::internal("the router answered the call with another call's answer")
                })
            }),
            Ok(Outcome::Lost(status)) => Err(status),
            Err(_) => Err(link.ended()),
        })
    }

    /// The link calls go on: the current one, or a new one opening.
    fn link(self: &Arc<Self>) -> Arc<Link> {
        let mut current = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = &*current
            && *link.state.borrow() != State::Closed
        {
            return Arc::clone(link);
        }
        let link = self.open();
        *current = Some(Arc::clone(&link));
        link
    }

    /// Drops `link` as the current one, if it still is.
    fn forget(&self, link: &Arc<Link>) {
        let mut current = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|now| Arc::ptr_eq(now, link)) {
            *current = None;
        }
    }

    /// Asks for a stream: its link, and the task that opens it and reads its answers.
    fn open(self: &Arc<Self>) -> Arc<Link> {
        let (calls, outgoing) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            state: watch::Sender::new(State::Opening),
            ended: Mutex::new(None),
            calls,
            waiting: Mutex::default(),
        });
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(outgoing));
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        let (mux, driven) = (Arc::clone(self), Arc::clone(&link));
        tokio::spawn(async move {
            let ended = match mux.drive(request, &driven).await {
                Ok(()) => Status::unavailable(
                    "the router ended the call stream before answering (it is stopping)",
                ),
                Err(status) => {
                    if status.code() == tonic::Code::Unimplemented {
                        tracing::info!(
                            %status,
                            "the router does not serve Multiplex: calling it unary"
                        );
                        mux.unary_only.store(true, Ordering::Relaxed);
                    }
                    status
                }
            };
            mux.forget(&driven);
            driven.close(ended);
        });
        link
    }

    /// Opens the stream, then hands each answer to its caller until the stream ends.
    async fn drive(
        &self,
        request: tonic::Request<UnboundedReceiverStream<MultiplexRequest>>,
        link: &Link,
    ) -> Result<(), Status> {
        let mut answers = self.client.clone().multiplex(request).await?.into_inner();
        link.state.send_replace(State::Open);
        while let Some(answer) = answers.message().await? {
            let Some(caller) = link.waiting().callers.remove(&answer.call_id) else {
                continue;
            };
            let _ = caller.send(match answer.result {
                Some(result) => Outcome::Answered(result),
                None => Outcome::Lost(Status::internal("the router answered a call with nothing")),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, sync::atomic::AtomicUsize, time::Instant};

    use handoff_proto::{
        fake::{AssignHuman, AssignOnly},
        router::v1::router_service_server::RouterServiceServer,
    };
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response};

    use super::*;
    use crate::router_client::RouterClient;

    /// Answers each session with its own id, counting the calls that came unary (those
    /// carry their HTTP/2 stream's headers as metadata) and those that came on a stream.
    #[derive(Clone)]
    struct Echo {
        multiplexes: bool,
        unary: Arc<AtomicUsize>,
        streamed: Arc<AtomicUsize>,
    }

    impl Echo {
        fn new(multiplexes: bool) -> Self {
            Self {
                multiplexes,
                unary: Arc::default(),
                streamed: Arc::default(),
            }
        }
    }

    #[tonic::async_trait]
    impl AssignHuman for Echo {
        async fn assign_human(
            &self,
            request: Request<AssignHumanRequest>,
        ) -> Result<Response<AssignHumanResponse>, Status> {
            let counter = match request.metadata().get("content-type") {
                Some(_) => &self.unary,
                None => &self.streamed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let session = request.into_inner().session_id;
            // Later sessions answer sooner, so that answers overtake each other.
            let millis = 30u64.saturating_sub(session.len() as u64 * 2);
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Ok(Response::new(AssignHumanResponse {
                agent_ids: vec![session],
                ..AssignHumanResponse::default()
            }))
        }

        fn multiplexes(&self) -> bool {
            self.multiplexes
        }
    }

    /// A server of its own runtime, so that stopping it closes its connections too.
    struct Server {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            drop(self.stop.take());
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Serves `echo` on `addr` (port 0: a free one) until the server is dropped.
    async fn serve(echo: &Echo, addr: SocketAddr) -> (SocketAddr, Server) {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let service = RouterServiceServer::new(AssignOnly(echo.clone()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let served = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(TcpListenerStream::new(listener));
                tokio::select! {
                    _ = served => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection's task, and with it the socket.
        });
        let server = Server {
            stop: Some(stop),
            thread: Some(thread),
        };
        (addr, server)
    }

    fn client(addr: SocketAddr) -> RouterClient {
        RouterClient::new(
            &format!("http://{addr}"),
            Duration::from_secs(2),
            None,
            None,
        )
        .unwrap()
    }

    async fn assign(client: &RouterClient, session: &str) -> Result<Vec<String>, Status> {
        let request = AssignHumanRequest {
            sdk_app_id: 1,
            session_id: session.to_owned(),
            client_user_id: "user".to_owned(),
            ..AssignHumanRequest::default()
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        Ok(client.assign_human(request, deadline).await?.agent_ids)
    }

    /// Sessions "s", "ss", "sss", ... called all at once; each caller's answer.
    async fn burst(client: &RouterClient, n: usize) -> Vec<(String, Result<Vec<String>, Status>)> {
        let calls = (1..=n).map(|len| {
            let session = "s".repeat(len);
            async move {
                let answer = assign(client, &session).await;
                (session, answer)
            }
        });
        futures_util::future::join_all(calls).await
    }

    #[tokio::test]
    async fn the_gateways_calls_share_one_stream_and_each_gets_its_own_answer() {
        let echo = Echo::new(true);
        let (addr, _server) = serve(&echo, "127.0.0.1:0".parse().unwrap()).await;
        let client = client(addr);
        for (session, answer) in burst(&client, 12).await {
            assert_eq!(answer.unwrap(), vec![session]);
        }
        assert_eq!(echo.streamed.load(Ordering::Relaxed), 12);
        assert_eq!(echo.unary.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_router_without_multiplex_is_called_unary_and_loses_no_call() {
        let echo = Echo::new(false);
        let (addr, _server) = serve(&echo, "127.0.0.1:0".parse().unwrap()).await;
        let client = client(addr);
        for _ in 0..2 {
            for (session, answer) in burst(&client, 6).await {
                assert_eq!(answer.unwrap(), vec![session]);
            }
        }
        assert_eq!(echo.unary.load(Ordering::Relaxed), 12);
        assert_eq!(echo.streamed.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_router_that_comes_back_is_reached_on_a_new_stream() {
        let echo = Echo::new(true);
        let (addr, server) = serve(&echo, "127.0.0.1:0".parse().unwrap()).await;
        let client = client(addr);
        assert_eq!(assign(&client, "before").await.unwrap(), vec!["before"]);
        drop(server);
        // Down: the call fails as a unary one would, and does not hang.
        let down = assign(&client, "down").await.unwrap_err();
        assert!(
            matches!(down.code(), tonic::Code::Unavailable | tonic::Code::Unknown),
            "{down:?}"
        );
        let (_, _server) = serve(&echo, addr).await;
        let mut answer = Err(down);
        for _ in 0..50 {
            answer = assign(&client, "after").await;
            if answer.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(answer.unwrap(), vec!["after"]);
        assert_eq!(echo.streamed.load(Ordering::Relaxed), 2);
        assert_eq!(echo.unary.load(Ordering::Relaxed), 0);
    }
}
