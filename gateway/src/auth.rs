//! Who is calling: the `SdkAppid` must be one of ours, and when the app has a token the
//! callback must carry `Sign = hex(sha256(token + RequestTime))` with a fresh `RequestTime`.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use handoff_core::{
    config::{Config, Secret},
    id::{GroupId, SdkAppId},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{error::GatewayError, tencent::CallbackQuery};

/// What the gateway knows of an app.
#[derive(Debug, Clone)]
pub struct AppPolicy {
    /// The Tencent app (`SdkAppId`).
    pub id: SdkAppId,
    /// The callback token, when authentication is on.
    pub token: Option<Secret>,
    /// A second token accepted during a rotation.
    pub previous_token: Option<Secret>,
    /// The group answered when the router fails.
    pub fallback_group_id: Option<GroupId>,
}

/// The apps this gateway serves, and how far `RequestTime` may drift.
#[derive(Debug, Clone)]
pub struct Apps {
    apps: HashMap<SdkAppId, AppPolicy>,
    max_clock_skew: Duration,
}

impl Apps {
    /// The apps of `config`.
    pub fn from_config(config: &Config) -> Self {
        let apps = config
            .apps
            .iter()
            .map(|app| {
                let policy = AppPolicy {
                    id: app.sdk_app_id,
                    token: app.token.clone(),
                    previous_token: app.previous_token.clone(),
                    fallback_group_id: app.fallback_group_id,
                };
                (app.sdk_app_id, policy)
            })
            .collect();
        Self {
            apps,
            max_clock_skew: config.gateway.max_clock_skew.get(),
        }
    }

    /// Checks that the callback comes from one of our apps and, where the app has a token,
    /// that it is signed and fresh at `now`.
    pub fn authenticate(
        &self,
        query: &CallbackQuery,
        now: SystemTime,
    ) -> Result<&AppPolicy, GatewayError> {
        let raw_id = query.sdk_app_id.as_deref().ok_or_else(|| {
            GatewayError::BadRequest("query parameter SdkAppid is required".into())
        })?;
        let app = SdkAppId::parse(raw_id)
            .ok()
            .and_then(|id| self.apps.get(&id))
            .ok_or_else(|| GatewayError::UnknownApp(raw_id.to_owned()))?;
        let Some(token) = &app.token else {
            return Ok(app);
        };
        let sign = query
            .sign
            .as_deref()
            .ok_or(GatewayError::MissingAuth("Sign"))?;
        let request_time = query
            .request_time
            .as_deref()
            .ok_or(GatewayError::MissingAuth("RequestTime"))?;
        // Both tokens are always tried, so the time taken says nothing of which matched.
        let current = signature_matches(token, request_time, sign);
        let previous = app
            .previous_token
            .as_ref()
            .is_some_and(|previous| signature_matches(previous, request_time, sign));
        if !(current | previous) {
            return Err(GatewayError::BadSignature);
        }
        check_freshness(request_time, now, self.max_clock_skew)?;
        Ok(app)
    }
}

impl Apps {
    /// How long a signature is remembered by the [`crate::ledger::Ledger`]: as long as its
    /// `RequestTime` can be fresh, either way of the gateway's clock.
    pub fn signature_window(&self) -> Duration {
        self.max_clock_skew * 2
    }
}

/// `lowercase hex(SHA-256(token + request_time))`, Tencent's callback signature.
pub fn sign(token: &str, request_time: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(token.as_bytes());
    hasher.update(request_time.as_bytes());
    hex::encode(hasher.finalize())
}

/// Compares `sign` with the expected signature in constant time (any hex case).
fn signature_matches(token: &Secret, request_time: &str, sign: &str) -> bool {
    let expected = self::sign(token.expose(), request_time);
    let given = sign.trim().to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// `request_time` must be Unix seconds within `max_skew` of `now`, either way.
fn check_freshness(
    request_time: &str,
    now: SystemTime,
    max_skew: Duration,
) -> Result<(), GatewayError> {
    let seconds: u64 = request_time
        .trim()
        .parse()
        .map_err(|_| GatewayError::StaleRequest(format!("{request_time:?} is not Unix seconds")))?;
    let sent = UNIX_EPOCH + Duration::from_secs(seconds);
    let skew = now
        .duration_since(sent)
        .or_else(|_| sent.duration_since(now))
        .unwrap_or_default();
    if skew > max_skew {
        return Err(GatewayError::StaleRequest(format!(
            "is {} s away from the gateway's clock (at most {} s allowed)",
            skew.as_secs(),
            max_skew.as_secs()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;

    /// CONTRACT.md's test vector.
    const TOKEN: &str = "xxxxyyyy";
    const REQUEST_TIME: &str = "1669872112";
    const SIGN: &str = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061";

    #[test]
    fn signs_the_contract_test_vector() {
        assert_eq!(sign(TOKEN, REQUEST_TIME), SIGN);
        assert!(signature_matches(&Secret::new(TOKEN), REQUEST_TIME, SIGN));
        assert!(signature_matches(
            &Secret::new(TOKEN),
            REQUEST_TIME,
            &SIGN.to_uppercase()
        ));
        assert!(!signature_matches(&Secret::new(TOKEN), "1669872113", SIGN));
        assert!(!signature_matches(
            &Secret::new("other"),
            REQUEST_TIME,
            SIGN
        ));
        assert!(!signature_matches(
            &Secret::new(TOKEN),
            REQUEST_TIME,
            &SIGN[..10]
        ));
        assert!(!signature_matches(&Secret::new(TOKEN), REQUEST_TIME, ""));
    }

    fn apps() -> Result<Apps, Box<dyn std::error::Error>> {
        let text = format!(
            "[[apps]]\nsdk_app_id = 1400000001\ntoken = \"{TOKEN}\"\n[[apps]]\nsdk_app_id = 1400000002\n"
        );
        let config = handoff_core::config::parse(&text, Path::new("t.toml"), Vec::new())?;
        Ok(Apps::from_config(&config))
    }

    fn query(app: &str, sign: Option<&str>, time: Option<&str>) -> CallbackQuery {
        CallbackQuery {
            sdk_app_id: Some(app.to_owned()),
            sign: sign.map(str::to_owned),
            request_time: time.map(str::to_owned),
            ..CallbackQuery::default()
        }
    }

    #[test]
    fn during_a_rotation_either_token_signs() -> Result<(), Box<dyn std::error::Error>> {
        let text = format!(
            "[[apps]]\nsdk_app_id = 1400000001\ntoken = \"next-token\"\nprevious_token = \"{TOKEN}\"\n"
        );
        let config = handoff_core::config::parse(&text, Path::new("t.toml"), Vec::new())?;
        let apps = Apps::from_config(&config);
        let now = UNIX_EPOCH + Duration::from_secs(1_669_872_112);
        let old = query("1400000001", Some(SIGN), Some(REQUEST_TIME));
        assert!(
            apps.authenticate(&old, now).is_ok(),
            "the token being replaced"
        );
        let new_sign = sign("next-token", REQUEST_TIME);
        let new = query("1400000001", Some(&new_sign), Some(REQUEST_TIME));
        assert!(apps.authenticate(&new, now).is_ok(), "the new token");
        let other = sign("some-other-token", REQUEST_TIME);
        let forged = query("1400000001", Some(&other), Some(REQUEST_TIME));
        assert_eq!(
            apps.authenticate(&forged, now)
                .map(|_| ())
                .map_err(|e| e.error_code()),
            Err(2004)
        );
        Ok(())
    }

    #[test]
    fn checks_app_then_signature_then_freshness() -> Result<(), Box<dyn std::error::Error>> {
        let apps = apps()?;
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        let sent = 1_669_872_112;
        let ok = apps.authenticate(
            &query("1400000001", Some(SIGN), Some(REQUEST_TIME)),
            at(sent + 60),
        )?;
        assert_eq!(ok.id.get(), 1_400_000_001);
        let unsigned = apps.authenticate(&query("1400000002", None, None), at(0))?;
        assert_eq!(unsigned.id.get(), 1_400_000_002);
        let cases = [
            (
                query("1400000009", Some(SIGN), Some(REQUEST_TIME)),
                at(sent),
                2001,
            ),
            (query("abc", None, None), at(sent), 2001),
            (CallbackQuery::default(), at(sent), 1001),
            (
                query("1400000001", None, Some(REQUEST_TIME)),
                at(sent),
                2002,
            ),
            (query("1400000001", Some(SIGN), None), at(sent), 2002),
            (
                query(
                    "1400000001",
                    Some(&SIGN.replace('1', "2")),
                    Some(REQUEST_TIME),
                ),
                at(sent),
                2004,
            ),
            (
                query("1400000001", Some(SIGN), Some(REQUEST_TIME)),
                at(sent + 61),
                2003,
            ),
            (
                query("1400000001", Some(SIGN), Some(REQUEST_TIME)),
                at(sent - 61),
                2003,
            ),
        ];
        for (q, now, code) in cases {
            match apps.authenticate(&q, now) {
                Ok(app) => panic!("{q:?} accepted as {app:?}"),
                Err(err) => assert_eq!(err.error_code(), code, "{q:?}: {err}"),
            }
        }
        Ok(())
    }

    proptest! {
        /// Whatever the token and time, their signature verifies, and changing any one
        /// character of it (or of the time) does not.
        #[test]
        fn a_signature_verifies_and_no_altered_one_does(
            token in "[ -~]{1,64}",
            time in "[0-9]{1,12}",
            at in any::<prop::sample::Index>(),
        ) {
            let secret = Secret::new(token.clone());
            let signed = sign(&token, &time);
            prop_assert!(signature_matches(&secret, &time, &signed));
            let mut altered: Vec<char> = signed.chars().collect();
            let i = at.index(altered.len());
            altered[i] = if altered[i] == '0' { '1' } else { '0' };
            let altered: String = altered.into_iter().collect();
            prop_assert!(!signature_matches(&secret, &time, &altered));
            let later = format!("{}0", time);
            prop_assert!(!signature_matches(&secret, &later, &signed));
        }

        /// Any query, however odd, is answered: an app, or an error with its code.
        #[test]
        fn authentication_never_panics(
            app in prop_oneof![Just("1400000001".to_owned()), "\\PC{0,30}"],
            sign in proptest::option::of("\\PC{0,80}"),
            time in proptest::option::of(prop_oneof!["[0-9]{0,25}", "\\PC{0,20}"]),
            now in any::<u32>(),
        ) {
            let apps = apps().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let q = query(&app, sign.as_deref(), time.as_deref());
            let at = UNIX_EPOCH + Duration::from_secs(u64::from(now));
            if let Err(err) = apps.authenticate(&q, at) {
                prop_assert!((1000..3000).contains(&err.error_code()), "{err}");
            }
        }
    }
}
