//! A `RouterService` for tests of the router's callers (the gateway, its end-to-end tests):
//! it answers `AssignHuman` as the test says, serves `Multiplex` (so `AssignHuman` reaches it
//! over a stream as well), and answers every other rpc with UNIMPLEMENTED.
//!
//! The generated server trait has no default methods, so a new rpc fails to compile until
//! the router implements it, and here, where a fake says so explicitly.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use crate::router::v1::{
    self as api, AssignHumanRequest, AssignHumanResponse, router_service_server::RouterService,
};

/// What a fake router does on `AssignHuman`.
#[tonic::async_trait]
pub trait AssignHuman: Clone + Send + Sync + 'static {
    /// Answers one `AssignHuman`.
    async fn assign_human(
        &self,
        request: Request<AssignHumanRequest>,
    ) -> Result<Response<AssignHumanResponse>, Status>;

    /// Whether the fake serves `Multiplex`; one that does not answers it UNIMPLEMENTED, as
    /// a router older than the rpc does.
    fn multiplexes(&self) -> bool {
        true
    }
}

/// A router that answers `AssignHuman` with `T` and nothing else.
#[derive(Clone)]
pub struct AssignOnly<T>(pub T);

fn unimplemented<T>(rpc: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{rpc}: this fake answers AssignHuman only"
    )))
}

#[tonic::async_trait]
impl<T: AssignHuman> RouterService for AssignOnly<T> {
    async fn assign_human(
        &self,
        request: Request<AssignHumanRequest>,
    ) -> Result<Response<AssignHumanResponse>, Status> {
        self.0.assign_human(request).await
    }

    async fn explain_assignment(
        &self,
        _: Request<api::ExplainAssignmentRequest>,
    ) -> Result<Response<api::ExplainAssignmentResponse>, Status> {
        unimplemented("ExplainAssignment")
    }

    async fn upsert_agent(
        &self,
        _: Request<api::UpsertAgentRequest>,
    ) -> Result<Response<api::UpsertAgentResponse>, Status> {
        unimplemented("UpsertAgent")
    }

    async fn remove_agent(
        &self,
        _: Request<api::RemoveAgentRequest>,
    ) -> Result<Response<api::RemoveAgentResponse>, Status> {
        unimplemented("RemoveAgent")
    }

    async fn set_agent_status(
        &self,
        _: Request<api::SetAgentStatusRequest>,
    ) -> Result<Response<api::SetAgentStatusResponse>, Status> {
        unimplemented("SetAgentStatus")
    }

    async fn upsert_customer(
        &self,
        _: Request<api::UpsertCustomerRequest>,
    ) -> Result<Response<api::UpsertCustomerResponse>, Status> {
        unimplemented("UpsertCustomer")
    }

    async fn list_agents(
        &self,
        _: Request<api::ListAgentsRequest>,
    ) -> Result<Response<api::ListAgentsResponse>, Status> {
        unimplemented("ListAgents")
    }

    async fn report_session_event(
        &self,
        _: Request<api::ReportSessionEventRequest>,
    ) -> Result<Response<api::ReportSessionEventResponse>, Status> {
        unimplemented("ReportSessionEvent")
    }

    async fn list_sessions(
        &self,
        _: Request<api::ListSessionsRequest>,
    ) -> Result<Response<api::ListSessionsResponse>, Status> {
        unimplemented("ListSessions")
    }

    async fn get_status(
        &self,
        _: Request<api::GetStatusRequest>,
    ) -> Result<Response<api::GetStatusResponse>, Status> {
        unimplemented("GetStatus")
    }

    type MultiplexStream = crate::multiplex::Answers;

    async fn multiplex(
        &self,
        request: Request<Streaming<api::MultiplexRequest>>,
    ) -> Result<Response<Self::MultiplexStream>, Status> {
        if !self.0.multiplexes() {
            return unimplemented("Multiplex");
        }
        Ok(Response::new(crate::multiplex::serve(
            Arc::new(self.clone()),
            request.into_inner(),
            1024,
            |_| Ok(tonic::Extensions::new()),
            std::future::pending(),
        )))
    }
}
