//! Parsing a wire `AssignHumanRequest` into the engine's [`Handoff`]: every field checked
//! once, with the field named when it is wrong.

use std::{collections::BTreeMap, time::SystemTime};

use handoff_core::id::{ClientUserId, SdkAppId, SessionId};
use handoff_proto::router::v1::{AssignHumanRequest, Platform};

use crate::{engine::Handoff, error::RouterError};

/// Most attributes a request may carry.
const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute key, channel or platform name, in bytes.
const MAX_NAME_BYTES: usize = 64;
/// Longest attribute value, in bytes.
const MAX_VALUE_BYTES: usize = 1024;

/// Builds a [`Handoff`] from the wire request; `now` stands in for a missing event time.
pub fn parse_request(request: AssignHumanRequest, now: SystemTime) -> Result<Handoff, RouterError> {
    let app =
        SdkAppId::new(request.sdk_app_id).map_err(|e| RouterError::invalid("sdk_app_id", e))?;
    let session =
        SessionId::parse(request.session_id).map_err(|e| RouterError::invalid("session_id", e))?;
    let client_user = ClientUserId::parse(request.client_user_id)
        .map_err(|e| RouterError::invalid("client_user_id", e))?;
    let event_time = time("event_time", request.event_time)?.unwrap_or(now);
    let platform = platform_name(request.platform).to_owned();
    let channel = request.channel.trim().to_ascii_lowercase();
    check_name("channel", &channel)?;
    if request.attributes.len() > MAX_ATTRIBUTES {
        return Err(RouterError::invalid(
            "attributes",
            format!(
                "at most {MAX_ATTRIBUTES} entries, got {}",
                request.attributes.len()
            ),
        ));
    }
    for (key, value) in &request.attributes {
        if key.is_empty() {
            return Err(RouterError::invalid("attributes", "keys must not be empty"));
        }
        check_name("attributes", key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(RouterError::invalid(
                "attributes",
                format!("value of {key:?} is longer than {MAX_VALUE_BYTES} bytes"),
            ));
        }
    }
    let attributes: BTreeMap<String, String> = request.attributes.into_iter().collect();
    Ok(Handoff {
        app,
        session,
        client_user,
        event_time,
        platform,
        channel,
        attributes,
    })
}

/// A wire timestamp as a time, checked; `None` when it is not set.
pub fn time(
    field: &'static str,
    timestamp: Option<prost_types::Timestamp>,
) -> Result<Option<SystemTime>, RouterError> {
    match timestamp {
        Some(timestamp) if !(0..1_000_000_000).contains(&timestamp.nanos) => Err(
            RouterError::invalid(field, "nanos must be from 0 to 999,999,999"),
        ),
        Some(timestamp) => SystemTime::try_from(timestamp)
            .map(Some)
            .map_err(|e| RouterError::invalid(field, e)),
        None => Ok(None),
    }
}

/// A report's identity, checked like Tencent's RequestID: short, printable; `None` when
/// empty.
pub fn event_id(field: &'static str, id: String) -> Result<Option<String>, RouterError> {
    if id.is_empty() {
        return Ok(None);
    }
    if id.len() > MAX_EVENT_ID_BYTES || id.chars().any(char::is_control) {
        return Err(RouterError::invalid(
            field,
            format!("must be at most {MAX_EVENT_ID_BYTES} bytes without control characters"),
        ));
    }
    Ok(Some(id))
}

/// Longest report identity, in bytes.
const MAX_EVENT_ID_BYTES: usize = 256;

fn check_name(field: &'static str, name: &str) -> Result<(), RouterError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(RouterError::invalid(
            field,
            format!("{name:?} is longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(RouterError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// The platform as rules see it; `""` when the caller did not say.
fn platform_name(value: i32) -> &'static str {
    match Platform::try_from(value) {
        Ok(Platform::Unspecified) => "",
        Ok(Platform::Restapi) => "restapi",
        Ok(Platform::Web) => "web",
        Ok(Platform::Android) => "android",
        Ok(Platform::Ios) => "ios",
        Ok(Platform::Windows) => "windows",
        Ok(Platform::Mac) => "mac",
        Ok(Platform::Ipad) => "ipad",
        Ok(Platform::Other) | Err(_) => "other",
    }
}
