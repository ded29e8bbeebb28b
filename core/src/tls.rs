//! TLS for the listeners (rustls, ring): a certificate chain and key from PEM files, read
//! again when either file changes (checked at most once a second, at handshakes), so a
//! renewed certificate is served without a restart; a file that no longer reads keeps the
//! last good pair and says why. Optionally, client certificates signed by a CA (mTLS).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};

use crate::config::TlsConfig;

/// How often, at most, the files are looked at again.
const RECHECK: Duration = Duration::from_secs(1);

/// The crypto every TLS config here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The certificates in a PEM file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|err| format!("{}: {err}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| format!("{}: {err}", path.display()))
}

/// The trust anchors in a PEM file of CA certificates.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|err| format!("{}: {err}", path.display()))?;
    }
    Ok(roots)
}

/// A server config for `tls`, offering `alpn` protocols, its certificate following its
/// files.
pub fn server_config(tls: &TlsConfig, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
    let resolver = Arc::new(Reloading::open(tls.cert.clone(), tls.key.clone())?);
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|err| format!("{}: {err}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The certificate and key, read again when their files change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    modified: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Reloading {
    fn open(cert: PathBuf, key: PathBuf) -> Result<Self, String> {
        let modified = (modified(&cert), modified(&key));
        let loaded = Self::load(&cert, &key)?;
        Ok(Self {
            cert,
            key,
            state: Mutex::new(Loaded {
                key: loaded,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
        let chain = certificates(cert)?;
        let key = private_key(key)?;
        let certified = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|err| format!("{}: {err}", cert.display()))?;
        Ok(Arc::new(certified))
    }

    /// The pair to serve, read again first if a file changed since it was last looked at.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let now = (modified(&self.cert), modified(&self.key));
            if now != state.modified {
                match Self::load(&self.cert, &self.key) {
                    Ok(key) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        state.key = key;
                        state.modified = now;
                    }
                    // Half-written while being replaced, usually: try again next time.
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot reload the TLS certificate; serving the last one");
                    }
                }
            }
        }
        Arc::clone(&state.key)
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
