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
    check_attributes("attributes", &request.attributes)?;
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

/// Free attributes (a request's, an agent's, a customer's): at most [`MAX_ATTRIBUTES`],
/// keys names, values at most [`MAX_VALUE_BYTES`].
pub fn check_attributes<'a>(
    field: &'static str,
    attributes: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), RouterError> {
    for (count, (key, value)) in attributes.into_iter().enumerate() {
        if count >= MAX_ATTRIBUTES {
            return Err(RouterError::invalid(
                field,
                format!("at most {MAX_ATTRIBUTES} entries"),
            ));
        }
        if key.is_empty() {
            return Err(RouterError::invalid(field, "keys must not be empty"));
        }
        check_name(field, key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(RouterError::invalid(
                field,
                format!(
                    "value of {} is longer than {MAX_VALUE_BYTES} bytes",
                    shown(key)
                ),
            ));
        }
    }
    Ok(())
}

/// A list of names (tags, skills, schedule entries): at most [`MAX_ATTRIBUTES`] of at most
/// [`MAX_NAME_BYTES`] each.
pub fn check_names<'a>(
    field: &'static str,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<(), RouterError> {
    for (count, name) in names.into_iter().enumerate() {
        if count >= MAX_ATTRIBUTES {
            return Err(RouterError::invalid(
                field,
                format!("at most {MAX_ATTRIBUTES} entries"),
            ));
        }
        check_name(field, name)?;
    }
    Ok(())
}

/// A short free text (a display name, a tier): at most [`MAX_NAME_BYTES`] * 4 bytes.
pub fn check_text(field: &'static str, text: &str) -> Result<(), RouterError> {
    if text.len() > MAX_NAME_BYTES * 4 || text.chars().any(char::is_control) {
        return Err(RouterError::invalid(
            field,
            format!(
                "must be at most {} bytes without control characters",
                MAX_NAME_BYTES * 4
            ),
        ));
    }
    Ok(())
}

/// An untrusted value as an error message shows it: quoted, cut after 64 characters.
pub fn shown(value: &str) -> String {
    const SHOWN: usize = 64;
    match value.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

fn check_name(field: &'static str, name: &str) -> Result<(), RouterError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(RouterError::invalid(
            field,
            format!("{} is longer than {MAX_NAME_BYTES} bytes", shown(name)),
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
