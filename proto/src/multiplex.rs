//! The server side of the `Multiplex` rpc, over any [`RouterService`]: each call a stream
//! carries is served by the service's own unary method, as a task of its own, so that the
//! calls of one stream run side by side, finish in any order, and are checked, answered,
//! traced and counted exactly as their unary rpcs are. What a unary call's HTTP/2 stream
//! carried beside its message travels in the request instead: its deadline (`timeout`) and
//! its trace context (`trace_context`, put back as the call's metadata).
//!
//! A stream holds at most `max_in_flight` calls running; a call beyond them is answered
//! UNAVAILABLE at once, as the listener's `load_shed` answers a unary call beyond its
//! connection's limit. Answers wait for the caller in a queue of the same size; a caller
//! that stops reading them stops being read (HTTP/2 flow control then holds its writes),
//! so a stream never holds more than that in memory. A call that panics is answered
//! INTERNAL and leaves the stream and its other calls alone.
//!
//! The stream ends with OK once the caller has closed its side and every call it sent has
//! been answered, or once `closing` resolves (the router is stopping): no further call is
//! read, and the stream ends when those read have been answered. A call the caller sent
//! that is unanswered when the stream ends OK was therefore never started, and may be sent
//! again elsewhere.

use std::{panic::AssertUnwindSafe, pin::Pin, sync::Arc, time::Duration};

use futures_util::FutureExt as _;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream};
use tonic::{Extensions, Request, Status, metadata::MetadataMap};

use crate::router::v1::{
    CallError, MultiplexRequest, MultiplexResponse, multiplex_request::Call,
    multiplex_response::Result as Answer, router_service_server::RouterService,
};

/// The answers of a `Multiplex` stream, as the generated server returns them.
pub type Answers = Pin<Box<dyn Stream<Item = Result<MultiplexResponse, Status>> + Send + 'static>>;

/// The name of the unary rpc that serves `call`, as a path and a grant name it.
pub fn method(call: &Call) -> &'static str {
    match call {
        Call::AssignHuman(_) => "AssignHuman",
        Call::ReportSessionEvent(_) => "ReportSessionEvent",
        Call::SetAgentStatus(_) => "SetAgentStatus",
    }
}

/// A failed call's answer.
pub fn error(status: &Status) -> Answer {
    Answer::Error(CallError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    })
}

/// The status an answer says a call failed with, or the answer.
pub fn status(answer: Answer) -> Result<Answer, Status> {
    match answer {
        Answer::Error(error) => Err(Status::new(error.code.into(), error.message)),
        answer => Ok(answer),
    }
}

/// Serves the calls of one `Multiplex` stream (`calls`: the stream's requests as tonic
/// decodes them) with `service`, at most `max_in_flight` at
/// once. `admit` is asked before each call, with the name of its method, for the call's
/// request extensions or the status that refuses it (the stream's token may not call that
/// method, or no longer may: a reload took it away). The stream stops reading calls once
/// `closing` resolves.
pub fn serve<S, A>(
    service: Arc<S>,
    mut calls: impl Stream<Item = Result<MultiplexRequest, Status>> + Send + Unpin + 'static,
    max_in_flight: usize,
    admit: A,
    closing: impl Future<Output = ()> + Send + 'static,
) -> Answers
where
    S: RouterService + ?Sized,
    A: Fn(&'static str) -> Result<Extensions, Status> + Send + 'static,
{
    let max_in_flight = max_in_flight.max(1);
    let (answers, queue) = mpsc::channel(max_in_flight);
    let running = Arc::new(Semaphore::new(max_in_flight));
    tokio::spawn(async move {
        tokio::pin!(closing);
        loop {
            let request = tokio::select! {
                biased;
                () = &mut closing => break,
                // The caller is gone: nobody waits for what it sent.
                () = answers.closed() => return,
                next = calls.next() => match next {
                    Some(Ok(request)) => request,
                    // The caller closed its side; answer what it sent.
                    None => break,
                    Some(Err(status)) => {
                        let _ = answers.send(Err(status)).await;
                        return;
                    }
                },
            };
            let call_id = request.call_id;
            let refused = |status: Status| {
                Ok(MultiplexResponse {
                    call_id,
                    result: Some(error(&status)),
                })
            };
            let Some(call) = request.call else {
                let status = Status::invalid_argument("call: is required");
                if answers.send(refused(status)).await.is_err() {
                    return;
                }
                continue;
            };
            let extensions = match admit(method(&call)) {
                Ok(extensions) => extensions,
                Err(status) => {
                    if answers.send(refused(status)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&running).try_acquire_owned() else {
                let status = Status::unavailable(format!(
                    "{max_in_flight} calls are in flight on this stream already"
                ));
                if answers.send(refused(status)).await.is_err() {
                    return;
                }
                continue;
            };
            let timeout = request
                .timeout
                .map(|timeout| Duration::try_from(timeout).unwrap_or(Duration::ZERO));
            let metadata = trace_metadata(request.trace_context);
            let (service, answers) = (Arc::clone(&service), answers.clone());
            tokio::spawn(async move {
                let call = run(&*service, call, metadata, extensions, timeout);
                let result = AssertUnwindSafe(call)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        error(&Status::internal(
                            "the router failed while serving this call",
                        ))
                    });
                let _ = answers
                    .send(Ok(MultiplexResponse {
                        call_id,
                        result: Some(result),
                    }))
                    .await;
                drop(permit);
            });
        }
        // Dropping `answers` here ends the stream once every running call has answered.
    });
    Box::pin(ReceiverStream::new(queue))
}

/// A call's trace context as the metadata a unary call would have carried it in.
fn trace_metadata(context: std::collections::HashMap<String, String>) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    for (name, value) in context {
        if let (Ok(name), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
            value.parse(),
        ) {
            metadata.insert(name, value);
        }
    }
    metadata
}

/// Serves one call with its unary method, within `timeout` when it has one.
async fn run<S: RouterService + ?Sized>(
    service: &S,
    call: Call,
    metadata: MetadataMap,
    extensions: Extensions,
    timeout: Option<Duration>,
) -> Answer {
    let served = async {
        Ok::<_, Status>(match call {
            Call::AssignHuman(message) => Answer::AssignHuman(
                service
                    .assign_human(Request::from_parts(metadata, extensions, message))
                    .await?
                    .into_inner(),
            ),
            Call::ReportSessionEvent(message) => Answer::ReportSessionEvent(
                service
                    .report_session_event(Request::from_parts(metadata, extensions, message))
                    .await?
                    .into_inner(),
            ),
            Call::SetAgentStatus(message) => Answer::SetAgentStatus(
                service
                    .set_agent_status(Request::from_parts(metadata, extensions, message))
                    .await?
                    .into_inner(),
            ),
        })
    };
    let served = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, served)
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "no answer within the call's timeout of {timeout:?}"
                )))
            }),
        None => served.await,
    };
    served.unwrap_or_else(|status| error(&status))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::mpsc::UnboundedSender;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use super::*;
    use crate::{
        fake::{AssignHuman, AssignOnly},
        router::v1::{AssignHumanRequest, AssignHumanResponse, SetAgentStatusRequest},
    };

    /// Answers each session with its own id after the number of milliseconds its id
    /// ends with; "panic" panics; records the traceparent it was given.
    #[derive(Clone, Default)]
    struct Sessions {
        served: Arc<AtomicUsize>,
        traceparent: Arc<std::sync::Mutex<Option<String>>>,
    }

    #[tonic::async_trait]
    impl AssignHuman for Sessions {
        async fn assign_human(
            &self,
            request: Request<AssignHumanRequest>,
        ) -> Result<tonic::Response<AssignHumanResponse>, Status> {
            if let Some(value) = request.metadata().get("traceparent") {
                *self.traceparent.lock().unwrap() = value.to_str().ok().map(str::to_owned);
            }
            let session = request.into_inner().session_id;
            assert!(session != "panic", "a bug in the router");
            let millis: u64 = session
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(millis)).await;
            self.served.fetch_add(1, Ordering::Relaxed);
            Ok(tonic::Response::new(AssignHumanResponse {
                agent_ids: vec![session],
                ..AssignHumanResponse::default()
            }))
        }
    }

    fn call(call_id: u64, session: &str) -> MultiplexRequest {
        MultiplexRequest {
            call_id,
            call: Some(Call::AssignHuman(AssignHumanRequest {
                session_id: session.to_owned(),
                ..AssignHumanRequest::default()
            })),
            ..MultiplexRequest::default()
        }
    }

    fn assign(call_id: u64, session: &str) -> Result<MultiplexRequest, Status> {
        Ok(call(call_id, session))
    }

    type Sender = UnboundedSender<Result<MultiplexRequest, Status>>;

    /// A stream served by `Sessions` with `limit`, admitting every call but SetAgentStatus.
    fn stream(
        fake: &Sessions,
        limit: usize,
        closing: impl Future<Output = ()> + Send + 'static,
    ) -> (Sender, Answers) {
        let (sender, calls) = tokio::sync::mpsc::unbounded_channel();
        let admit = |method: &'static str| {
            if method == "SetAgentStatus" {
                Err(Status::permission_denied("may not call SetAgentStatus"))
            } else {
                Ok(Extensions::new())
            }
        };
        let answers = serve(
            Arc::new(AssignOnly(fake.clone())),
            UnboundedReceiverStream::new(calls),
            limit,
            admit,
            closing,
        );
        (sender, answers)
    }

    /// Every answer until the stream ends, by call id: the session answered, or the code.
    async fn collect(answers: Answers) -> Vec<(u64, Result<String, tonic::Code>)> {
        let answers: Vec<_> = answers.collect().await;
        answers
            .into_iter()
            .map(|answer| {
                let answer = answer.expect("the stream does not fail");
                let result = match status(answer.result.expect("every answer has a result")) {
                    Ok(Answer::AssignHuman(response)) => Ok(response.agent_ids.concat()),
                    Ok(_) => panic!("an answer of another kind"),
                    Err(status) => Err(status.code()),
                };
                (answer.call_id, result)
            })
            .collect()
    }

    #[tokio::test]
    async fn calls_run_side_by_side_and_each_answer_carries_its_calls_id() {
        let fake = Sessions::default();
        let (calls, answers) = stream(&fake, 64, std::future::pending());
        // The first sent is the slowest: answers come back in the opposite order.
        for n in 0..20u64 {
            calls
                .send(assign(100 + n, &format!("s-{}", 40 - 2 * n)))
                .unwrap();
        }
        drop(calls);
        let answers = collect(answers).await;
        let ids: Vec<u64> = answers.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids.first(),
            Some(&119),
            "the fastest call answers first: {ids:?}"
        );
        for (id, answer) in answers {
            assert_eq!(answer, Ok(format!("s-{}", 40 - 2 * (id - 100))));
        }
        assert_eq!(fake.served.load(Ordering::Relaxed), 20);
    }

    #[tokio::test]
    async fn refused_empty_late_and_failing_calls_are_answered_as_unary_calls_would_be() {
        let fake = Sessions::default();
        let (calls, answers) = stream(&fake, 64, std::future::pending());
        calls
            .send(Ok(MultiplexRequest {
                call_id: 1,
                ..MultiplexRequest::default()
            }))
            .unwrap();
        calls
            .send(Ok(MultiplexRequest {
                call_id: 2,
                call: Some(Call::SetAgentStatus(SetAgentStatusRequest::default())),
                ..MultiplexRequest::default()
            }))
            .unwrap();
        let mut late = call(3, "s-500");
        late.timeout = Some(prost_types::Duration {
            seconds: 0,
            nanos: 20_000_000,
        });
        calls.send(Ok(late)).unwrap();
        calls.send(assign(4, "panic")).unwrap();
        calls.send(assign(5, "s-1")).unwrap();
        drop(calls);
        let mut answers = collect(answers).await;
        answers.sort_by_key(|(id, _)| *id);
        use tonic::Code;
        assert_eq!(
            answers,
            vec![
                (1, Err(Code::InvalidArgument)),
                (2, Err(Code::PermissionDenied)),
                (3, Err(Code::DeadlineExceeded)),
                (4, Err(Code::Internal)),
                (5, Ok("s-1".to_owned())),
            ]
        );
        // The refused call never reached the service; the panic left the stream alone.
        assert_eq!(fake.served.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn calls_beyond_the_limit_are_refused_at_once() {
        let fake = Sessions::default();
        let (calls, answers) = stream(&fake, 2, std::future::pending());
        calls.send(assign(1, "s-300")).unwrap();
        calls.send(assign(2, "s-300")).unwrap();
        calls.send(assign(3, "s-0")).unwrap();
        drop(calls);
        let answers = collect(answers).await;
        assert_eq!(answers.first(), Some(&(3, Err(tonic::Code::Unavailable))));
        assert_eq!(answers.len(), 3);
        assert_eq!(fake.served.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn closing_stops_reading_calls_and_ends_the_stream_once_those_read_are_answered() {
        let fake = Sessions::default();
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let (calls, mut answers) = stream(&fake, 8, async {
            let _ = closed.await;
        });
        calls.send(assign(1, "s-200")).unwrap();
        // Let the stream read the call before it is told to close.
        tokio::time::sleep(Duration::from_millis(50)).await;
        close.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Not read: the stream has let go of the caller's side.
        assert!(calls.send(assign(2, "s-0")).is_err());
        // The caller keeps its side open: the stream ends anyway.
        let first = answers
            .next()
            .await
            .expect("the call read is answered")
            .unwrap();
        assert_eq!(first.call_id, 1);
        assert!(
            answers.next().await.is_none(),
            "the stream ends without reading call 2"
        );
        assert_eq!(fake.served.load(Ordering::Relaxed), 1);
        drop(calls);
    }

    #[tokio::test]
    async fn a_calls_trace_context_reaches_the_service_as_metadata() {
        let fake = Sessions::default();
        let (calls, answers) = stream(&fake, 8, std::future::pending());
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut traced = call(1, "s-0");
        traced
            .trace_context
            .insert("traceparent".into(), parent.into());
        calls.send(Ok(traced)).unwrap();
        drop(calls);
        assert_eq!(collect(answers).await, vec![(1, Ok("s-0".to_owned()))]);
        assert_eq!(fake.traceparent.lock().unwrap().as_deref(), Some(parent));
    }
}
