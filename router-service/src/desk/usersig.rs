//! UserSig (Tencent's TLSSigAPIv2): the credential every Desk REST call carries for the
//! app's admin account, minted from the app's secret key.
//!
//! The token is a JSON object (`TLS.ver` "2.0", the identifier, the SdkAppId, when it was
//! made and for how long it holds, and `TLS.sig`: standard base64 of HMAC-SHA256 over
//! `TLS.identifier:…\nTLS.sdkappid:…\nTLS.time:…\nTLS.expire:…\n` keyed with the secret),
//! zlib-compressed, in base64 with `+/=` written `*-_`. Tencent's own libraries differ in
//! JSON spacing and zlib level, so tokens are compared by their fields, never their bytes;
//! this one is compact JSON in stored (uncompressed) zlib blocks, as Tencent's Go library
//! writes it.

use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};

/// What a UserSig says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The app (`SdkAppId`).
    pub sdk_app_id: u64,
    /// The account it is for (the app's admin, for REST).
    pub identifier: String,
    /// When it was made, Unix seconds.
    pub time: u64,
    /// How long it holds from then, seconds.
    pub expire: u64,
}

/// The `TLS.sig` of `claims` under `key`: standard base64 of HMAC-SHA256.
pub fn sig(key: &str, claims: &Claims) -> String {
    let message = format!(
        "TLS.identifier:{}\nTLS.sdkappid:{}\nTLS.time:{}\nTLS.expire:{}\n",
        claims.identifier, claims.sdk_app_id, claims.time, claims.expire
    );
    STANDARD.encode(hmac_sha256(key.as_bytes(), message.as_bytes()))
}

/// A UserSig for `claims`, signed with the app's secret `key`.
pub fn mint(key: &str, claims: &Claims) -> String {
    let json = serde_json::json!({
        "TLS.ver": "2.0",
        "TLS.identifier": claims.identifier,
        "TLS.sdkappid": claims.sdk_app_id,
        "TLS.expire": claims.expire,
        "TLS.time": claims.time,
        "TLS.sig": sig(key, claims),
    });
    let zlib = zlib_stored(json.to_string().as_bytes());
    STANDARD
        .encode(zlib)
        .chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// `data` as a zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4): what
/// Go's `zlib.NoCompression` writes, read by every inflater.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut chunks = data.chunks(u16::MAX as usize).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// Adler-32 (RFC 1950 §8).
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for byte in chunk {
            a += u32::from(*byte);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    (b << 16) | a
}

/// The stored blocks of a zlib stream [`zlib_stored`] wrote, checked.
#[cfg(test)]
pub(crate) fn unzlib_stored(stream: &[u8]) -> Option<Vec<u8>> {
    let (header, mut rest) = stream.split_at_checked(2)?;
    (header == [0x78, 0x01]).then_some(())?;
    let mut out = Vec::new();
    loop {
        let (&last, after) = rest.split_first()?;
        let (lengths, after) = after.split_at_checked(4)?;
        let len = u16::from_le_bytes([lengths[0], lengths[1]]);
        (!len == u16::from_le_bytes([lengths[2], lengths[3]])).then_some(())?;
        let (data, after) = after.split_at_checked(len.into())?;
        out.extend_from_slice(data);
        rest = after;
        if last & 1 == 1 {
            break;
        }
    }
    (rest == adler32(&out).to_be_bytes()).then_some(out)
}

/// What a token minted here says, and its `TLS.sig`: for tests that check a token without
/// trusting [`mint`] (the caller recomputes the signature with [`sig`]).
#[cfg(test)]
pub(crate) fn decode(token: &str) -> Option<(Claims, String)> {
    let standard: String = token
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect();
    let json = unzlib_stored(&STANDARD.decode(standard).ok()?)?;
    let fields: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let claims = Claims {
        sdk_app_id: fields["TLS.sdkappid"].as_u64()?,
        identifier: fields["TLS.identifier"].as_str()?.to_owned(),
        time: fields["TLS.time"].as_u64()?,
        expire: fields["TLS.expire"].as_u64()?,
    };
    Some((claims, fields["TLS.sig"].as_str()?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tencent's demo key, as its libraries' tests use it.
    const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

    fn claims(identifier: &str) -> Claims {
        Claims {
            sdk_app_id: 1_400_000_000,
            identifier: identifier.to_owned(),
            time: 1_569_910_200,
            expire: 15_552_000,
        }
    }

    #[test]
    fn the_signature_is_the_published_vectors() {
        // From the tls_sig_api crate's fixed vectors, checked with Python's hmac.
        assert_eq!(
            sig(KEY, &claims("0")),
            "CpjuBdQs9ZwnuGAJR8onoOeI9fweX2vIMMY94iOJWJY="
        );
        assert_eq!(
            sig(KEY, &claims("xiaojun")),
            "gOoeW13s19Fgyn8RwlEt/rLkw3wzLq9M+SqBbXTIfnQ="
        );
        // RFC 4231 case 2, for the HMAC itself.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_token_decodes_to_its_claims_and_signature() -> Result<(), Box<dyn std::error::Error>> {
        let token = mint(KEY, &claims("administrator"));
        assert!(!token.contains(['+', '/', '=']), "{token}");
        let standard: String = token
            .chars()
            .map(|c| match c {
                '*' => '+',
                '-' => '/',
                '_' => '=',
                c => c,
            })
            .collect();
        let json = unzlib_stored(&STANDARD.decode(standard)?).ok_or("not a zlib stream")?;
        let fields: serde_json::Value = serde_json::from_slice(&json)?;
        assert_eq!(fields["TLS.ver"], "2.0");
        assert_eq!(fields["TLS.identifier"], "administrator");
        assert_eq!(fields["TLS.sdkappid"], 1_400_000_000u64);
        assert_eq!(fields["TLS.time"], 1_569_910_200u64);
        assert_eq!(fields["TLS.expire"], 15_552_000u64);
        assert_eq!(fields["TLS.sig"], sig(KEY, &claims("administrator")));
        assert_eq!(
            decode(&token),
            Some((claims("administrator"), sig(KEY, &claims("administrator"))))
        );
        Ok(())
    }

    #[test]
    fn stored_zlib_holds_any_length_and_checks_itself() {
        for len in [0, 1, 100, 65_535, 65_536, 200_000] {
            let data: Vec<u8> = (0..len).map(|n| (n % 251) as u8).collect();
            assert_eq!(unzlib_stored(&zlib_stored(&data)), Some(data), "{len}");
        }
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }
}
