//! Tencent Desk's REST API (`v4/desk_http_svc/<command>`), for keeping the floor in step with
//! what Desk knows: its admin credentials ([`usersig`]), the envelope of its commands
//! ([`api`]) and a client that sends them and reads their answers ([`client`]).

pub mod api;
pub mod client;
pub mod usersig;
