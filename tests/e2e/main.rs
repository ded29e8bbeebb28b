//! End-to-end tests: the real router and gateway servers on port-0 listeners, driven with
//! real HTTP and gRPC clients, as Tencent and internal callers would.

mod access;
mod binary;
mod browser;
mod callback;
mod connections;
mod console;
mod day;
mod decision_log;
mod desk;
mod docs;
mod fake_desk;
mod forged;
mod grpc;
mod manage;
mod metrics;
mod readme;
mod redis;
mod router_connections;
mod routing;
mod secrets;
mod shuffle;
mod support;
mod tls;
mod traces;
