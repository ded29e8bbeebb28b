//! The `handoff.router.v1` gRPC API, generated from `proto/handoff/router/v1`.
//!
//! Messages, the `RouterService` client and server, and the encoded file
//! descriptor set that server reflection serves, and the plumbing of the `Multiplex`
//! rpc over any `RouterService`. Nothing here decides anything: the router owns the
//! logic, this crate only carries the wire types.

/// Version 1 of the router API.
#[allow(missing_docs, clippy::all)] // generated code
pub mod router {
    /// `handoff.router.v1`.
    pub mod v1 {
        tonic::include_proto!("handoff.router.v1");
    }
}

pub mod fake;
pub mod multiplex;

/// The router service as a trait object (the all-in-one's router in process, test fakes),
/// its `Multiplex` answers boxed as every implementation here boxes them.
pub type DynRouterService =
    dyn router::v1::router_service_server::RouterService<MultiplexStream = multiplex::Answers>;

/// The encoded `FileDescriptorSet` of every handoff proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("handoff_descriptor");
