//! The Desk REST envelope, without the transport: where a command is sent, what an answer
//! means, and when to ask again.
//!
//! Every command is `POST https://<region domain>/v4/desk_http_svc/<command>?sdkappid=…&
//! identifier=<admin>&usersig=…&random=<u32>&contenttype=json` with a JSON body; the answer
//! is HTTP 200 whatever happened, `{"ActionStatus","ErrorCode","ErrorInfo", …}` saying
//! whether it worked. A UserSig is a credential: URLs are logged only [`redacted`].

use std::{borrow::Cow, time::Duration};

use serde_json::Value;

/// Where an app's Desk commands go, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The region's REST domain, with its scheme (`https://adminapisgp.im.qcloud.com`).
    pub api: String,
    /// The app (`SdkAppId`).
    pub sdk_app_id: u64,
    /// An App admin account (`identifier`).
    pub admin: String,
}

impl Endpoint {
    /// The URL of `command` with `usersig` and the request's `random`.
    pub fn url(&self, command: &str, usersig: &str, random: u32) -> String {
        format!(
            "{}/v4/desk_http_svc/{command}?sdkappid={}&identifier={}&usersig={usersig}&random={random}&contenttype=json",
            self.api.trim_end_matches('/'),
            self.sdk_app_id,
            self.admin
        )
    }
}

/// `url` with its `usersig` hidden, for logs.
pub fn redacted(url: &str) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("usersig", _)) => "usersig=<redacted>".to_owned(),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}?{}", query.join("&"))
}

/// Why a Desk command did not work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeskError {
    /// Desk asks to be called less often: ask again after `retry_after` (with jitter).
    #[error("Desk rate-limited the call ({code}: {info}); retrying after {retry_after:?}")]
    RateLimited {
        /// Desk's `ErrorCode`.
        code: i64,
        /// Desk's `ErrorInfo`.
        info: String,
        /// How long to wait at least.
        retry_after: Duration,
    },
    /// The admin, key or data centre is wrong: asking again will not help.
    #[error(
        "Desk refused the credentials ({code}: {info}): check [apps.desk] admin, secret_key and api (the app's region)"
    )]
    BadCredentials {
        /// Desk's `ErrorCode`.
        code: i64,
        /// Desk's `ErrorInfo`.
        info: String,
    },
    /// The app is not a Desk app (141000).
    #[error("app {0} is not a Tencent Desk app (141000): Desk sync needs one")]
    NotDesk(u64),
    /// Anything else Desk answered.
    #[error("Desk answered {code}: {info}")]
    Failed {
        /// Desk's `ErrorCode`.
        code: i64,
        /// Desk's `ErrorInfo`.
        info: String,
    },
    /// The answer was not Desk's envelope.
    #[error("not a Desk answer: {0}")]
    Malformed(String),
    /// No answer came: the connection or TLS failed, a timeout passed, or the HTTP status
    /// was not 200 (Desk answers 200 whatever happened, so another status is a proxy or a
    /// network fault). The message names the phase and the host, never the UserSig.
    #[error("Desk unreachable: {0}")]
    Unreachable(String),
}

impl DeskError {
    /// A short, bounded name for this error, for a metrics label: `rate_limited`,
    /// `bad_credentials`, `not_desk`, `malformed`, `unreachable`, or Desk's own code
    /// (`"141010"`) for anything else it answered, since those codes are few and each
    /// means something different.
    pub fn label(&self) -> Cow<'static, str> {
        match self {
            Self::RateLimited { .. } => Cow::Borrowed("rate_limited"),
            Self::BadCredentials { .. } => Cow::Borrowed("bad_credentials"),
            Self::NotDesk(_) => Cow::Borrowed("not_desk"),
            Self::Failed { code, .. } => Cow::Owned(code.to_string()),
            Self::Malformed(_) => Cow::Borrowed("malformed"),
            Self::Unreachable(_) => Cow::Borrowed("unreachable"),
        }
    }
}

/// The codes that mean "too often": Tencent's REST and Desk limits (60007, 60011, 60018,
/// 60019, 141009) wait a few seconds; 70050 (a failed UserSig check, rate-limited) a minute.
fn rate_limit(code: i64) -> Option<Duration> {
    match code {
        60007 | 60011 | 60018 | 60019 | 141009 => Some(Duration::from_secs(5)),
        70050 => Some(Duration::from_secs(60)),
        _ => None,
    }
}

/// What Desk's `code` and `info` mean for app `app`.
pub fn classify(app: u64, code: i64, info: &str) -> DeskError {
    let info = info.to_owned();
    if let Some(retry_after) = rate_limit(code) {
        return DeskError::RateLimited {
            code,
            info,
            retry_after,
        };
    }
    match code {
        // UserSig expired, unreadable, another app's key, another user or app, or the key
        // or app unknown in this data centre.
        70001 | 70003 | 70009 | 70013 | 70014 | 70016 | 70020 => {
            DeskError::BadCredentials { code, info }
        }
        141000 => DeskError::NotDesk(app),
        _ => DeskError::Failed { code, info },
    }
}

/// The answer in `body` of app `app`'s call: its JSON when it worked.
pub fn answer(app: u64, body: &[u8]) -> Result<Value, DeskError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|err| DeskError::Malformed(err.to_string()))?;
    let code = value["ErrorCode"]
        .as_i64()
        .ok_or_else(|| DeskError::Malformed("no ErrorCode".into()))?;
    if code == 0 && value["ActionStatus"] == "OK" {
        return Ok(value);
    }
    Err(classify(
        app,
        code,
        value["ErrorInfo"].as_str().unwrap_or_default(),
    ))
}

/// Whether a listing has pages after page `number` (from 0) of `size`, of `total` in all.
pub fn more_pages(number: u64, size: u64, total: u64) -> bool {
    (number + 1).saturating_mul(size.max(1)) < total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_goes_to_the_regions_domain_as_the_admin_and_logs_without_its_usersig() {
        let endpoint = Endpoint {
            api: "https://adminapisgp.im.qcloud.com/".into(),
            sdk_app_id: 1_400_000_001,
            admin: "administrator".into(),
        };
        let url = endpoint.url("get_member_list", "eJw-secret_", 7);
        assert_eq!(
            url,
            "https://adminapisgp.im.qcloud.com/v4/desk_http_svc/get_member_list?sdkappid=1400000001&identifier=administrator&usersig=eJw-secret_&random=7&contenttype=json"
        );
        let logged = redacted(&url);
        assert!(!logged.contains("eJw-secret_"), "{logged}");
        assert!(logged.contains("usersig=<redacted>&random=7"), "{logged}");
    }

    #[test]
    fn answers_are_read_from_the_body_whatever_the_http_status_said() {
        let ok = br#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","Total":3}"#;
        assert_eq!(answer(1, ok).map(|v| v["Total"].clone()), Ok(3.into()));
        let answered = |code: i64| {
            let body = format!(r#"{{"ActionStatus":"FAIL","ErrorCode":{code},"ErrorInfo":"x"}}"#);
            answer(1_400_000_001, body.as_bytes())
        };
        for code in [60007, 60011, 60018, 60019, 141009] {
            assert!(
                matches!(answered(code), Err(DeskError::RateLimited { retry_after, .. }) if retry_after < Duration::from_secs(60)),
                "{code}"
            );
        }
        assert!(matches!(
            answered(70050),
            Err(DeskError::RateLimited { retry_after, .. }) if retry_after == Duration::from_secs(60)
        ));
        for code in [70001, 70003, 70009, 70013, 70014, 70016, 70020] {
            assert!(
                matches!(answered(code), Err(DeskError::BadCredentials { .. })),
                "{code}"
            );
        }
        assert_eq!(answered(141000), Err(DeskError::NotDesk(1_400_000_001)));
        assert!(matches!(
            answered(141010),
            Err(DeskError::Failed { code: 141010, .. })
        ));
        assert!(matches!(
            answer(1, b"<html>502</html>"),
            Err(DeskError::Malformed(_))
        ));
    }

    #[test]
    fn each_error_has_a_bounded_label() {
        let labels: Vec<_> = [
            classify(1, 141009, "x"),
            classify(1, 70009, "x"),
            classify(1, 141000, "x"),
            classify(1, 141010, "x"),
            DeskError::Malformed("x".into()),
            DeskError::Unreachable("x".into()),
        ]
        .iter()
        .map(DeskError::label)
        .collect();
        assert_eq!(
            labels,
            [
                "rate_limited",
                "bad_credentials",
                "not_desk",
                "141010",
                "malformed",
                "unreachable"
            ]
        );
    }

    #[test]
    fn listings_are_paged_to_the_end() {
        assert!(more_pages(0, 100, 101));
        assert!(!more_pages(1, 100, 101));
        assert!(!more_pages(0, 100, 100));
        assert!(!more_pages(0, 15, 0));
    }
}
