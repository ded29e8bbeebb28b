//! Identifiers parsed once at the boundary.
//!
//! The gateway builds them from Tencent's callback, the router from gRPC requests and the
//! config loader from TOML; past that point they are trusted as they are.
//!
//! Text identifiers are shared, not copied: a clone is a reference count, so an agent's id
//! in a ranking, an answer, a session record and a customer's previous-agent link is the
//! one string the roster holds.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};

/// Why a value could not become an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value was empty.
    #[error("must not be empty")]
    Empty,
    /// The value was longer than allowed.
    #[error("must be at most {max} bytes, got {len}")]
    TooLong {
        /// The limit in bytes.
        max: usize,
        /// The value's length in bytes.
        len: usize,
    },
    /// The value held a control character or white space.
    #[error("must not contain white space or control characters")]
    BadCharacter,
    /// The value was not a positive integer.
    #[error("must be a positive integer")]
    NotPositive,
    /// The value was not shaped like an e-mail address.
    #[error("must be an e-mail address (local@domain), got {0:?}")]
    NotEmail(String),
}

/// The longest session id, user id or agent id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

fn check_text(value: &str, allow_space: bool) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong {
            max: MAX_ID_BYTES,
            len: value.len(),
        });
    }
    let bad = |c: char| c.is_control() || (!allow_space && c.is_whitespace());
    if value.chars().any(bad) {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

/// Declares a positive-integer identifier newtype with a fallible `new`, serde through it,
/// `get` and `Display`.
macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(u64);

        impl $name {
            /// Accepts any positive integer.
            pub fn new(value: u64) -> Result<Self, IdError> {
                if value == 0 {
                    return Err(IdError::NotPositive);
                }
                Ok(Self(value))
            }

            /// Parses decimal text, as query strings carry it.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let value = text.trim().parse::<u64>().map_err(|_| IdError::NotPositive)?;
                Self::new(value)
            }

            /// The numeric id.
            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl TryFrom<u64> for $name {
            type Error = IdError;
            fn try_from(value: u64) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

numeric_id!(
    /// A Tencent app id (`SdkAppid`): a positive integer.
    SdkAppId
);

numeric_id!(
    /// A Tencent agent group id (`AgentGroupId`): a positive integer.
    GroupId
);

/// Declares a string identifier newtype (shared, immutable text) with a fallible `parse`,
/// serde through that parse, `Display`, `AsRef<str>` and `as_str`.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `value` and takes it as this identifier.
            pub fn parse(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref();
                let check: fn(&str) -> Result<(), IdError> = $check;
                check(value)?;
                Ok(Self(Arc::from(value)))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                String::from(&*id.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id!(
    /// A Desk session id: opaque text, at most [`MAX_ID_BYTES`], no white space or controls.
    SessionId,
    |v| check_text(v, false)
);

text_id!(
    /// The end user's id (`ClientUserId`): opaque text, at most [`MAX_ID_BYTES`], printable.
    ClientUserId,
    |v| check_text(v, true)
);

text_id!(
    /// An agent id, which Tencent defines as the agent's e-mail address.
    AgentId,
    check_email
);

fn check_email(value: &str) -> Result<(), IdError> {
    check_text(value, false)?;
    let not_email = || IdError::NotEmail(value.to_owned());
    let (local, domain) = value.split_once('@').ok_or_else(not_email)?;
    let domain_ok = !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.');
    if local.is_empty() || !domain_ok {
        return Err(not_email());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agent_ids_are_email_addresses() {
        assert!(AgentId::parse("svc1@tencent.com").is_ok());
        assert!(AgentId::parse("a.b+desk@support.example.co").is_ok());
        for bad in [
            "",
            "svc1",
            "@tencent.com",
            "svc1@",
            "a@b@c",
            "a b@c.com",
            "a@.com",
        ] {
            assert!(AgentId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn session_ids_reject_blank_long_and_control_text() {
        assert_eq!(SessionId::parse(""), Err(IdError::Empty));
        assert_eq!(SessionId::parse("aa bb"), Err(IdError::BadCharacter));
        assert_eq!(SessionId::parse("aa\u{0}"), Err(IdError::BadCharacter));
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert!(matches!(
            SessionId::parse(long),
            Err(IdError::TooLong { .. })
        ));
        assert_eq!(
            SessionId::parse("aa-bb-cc-dd").map(String::from),
            Ok("aa-bb-cc-dd".into())
        );
    }

    #[test]
    fn client_user_ids_may_hold_spaces() {
        assert!(ClientUserId::parse("Jane Doe").is_ok());
        assert!(ClientUserId::parse("a\nb").is_err());
    }

    #[test]
    fn app_ids_are_positive() {
        assert_eq!(
            SdkAppId::parse("1400000001").map(SdkAppId::get),
            Ok(1_400_000_001)
        );
        assert_eq!(SdkAppId::parse("0"), Err(IdError::NotPositive));
        assert_eq!(SdkAppId::parse("-1"), Err(IdError::NotPositive));
        assert_eq!(SdkAppId::parse("abc"), Err(IdError::NotPositive));
        assert!(GroupId::new(0).is_err());
    }

    proptest! {
        #[test]
        fn session_id_parse_never_panics_and_round_trips(s in ".{0,300}") {
            if let Ok(id) = SessionId::parse(s.clone()) {
                prop_assert_eq!(id.as_str(), s.as_str());
            }
        }

        #[test]
        fn agent_id_parse_accepts_every_plain_address(
            local in "[a-z0-9._+-]{1,20}",
            domain in "[a-z0-9-]{1,20}(\\.[a-z]{2,6}){0,2}",
        ) {
            let address = format!("{local}@{domain}");
            prop_assert!(AgentId::parse(address).is_ok());
        }
    }
}
