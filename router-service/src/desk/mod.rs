//! Tencent Desk's REST API (`v4/desk_http_svc/<command>`), for keeping the floor in step with
//! what Desk knows: its admin credentials ([`usersig`]) and the envelope of its commands
//! ([`api`]).

pub mod api;
pub mod usersig;
