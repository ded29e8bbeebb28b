//! TLS on both services, with certificates this test makes: the gateway serving HTTPS and
//! picking up a renewed certificate without a restart, the router serving gRPC over TLS
//! with client certificates required, and a gateway apart reaching it over `https://`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tokio_rustls::TlsConnector;

use crate::{
    connections::{callback, response},
    support::{Error, body, now_secs, request, signed_uri},
    traces::{Process, field, memory_config, own_ports, spawn},
};

/// A CA of the test's own, and files written under a directory removed on drop.
struct Pki {
    dir: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    fn new(name: &str) -> Result<Self, Error> {
        let dir = std::env::temp_dir().join(format!("handoff-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ca_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "handoff test CA");
        let ca = params.self_signed(&ca_key)?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        Ok(Self { dir, ca, ca_key })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A certificate for 127.0.0.1 (a server's, or a client's), written as `NAME.pem` and
    /// `NAME.key`; its DER.
    fn issue(&self, name: &str, client: bool) -> Result<Vec<u8>, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key)?;
        // The key first: a reader between the two writes sees a pair that does not match
        // and keeps the old one.
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem())?;
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem())?;
        Ok(cert.der().to_vec())
    }

    /// A client trusting this CA.
    fn connector(&self) -> Result<TlsConnector, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.der().to_vec()))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

fn config_file(pki: &Pki) -> Result<PathBuf, Error> {
    let path = pki.path("handoff.toml");
    std::fs::write(&path, memory_config())?;
    Ok(path)
}

/// A callback over HTTPS: the certificate the gateway showed, and the answer.
async fn https_callback(
    pki: &Pki,
    gateway: SocketAddr,
    session: &str,
) -> Result<(Vec<u8>, serde_json::Value), Error> {
    let tcp = TcpStream::connect(gateway).await?;
    let name = ServerName::IpAddress(gateway.ip().into());
    let mut tls = pki.connector()?.connect(name, tcp).await?;
    let shown = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .ok_or("no certificate shown")?;
    tls.write_all(&callback(session, true)).await?;
    let (head, body) = response(&mut tls).await?.ok_or("closed unanswered")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Ok((shown, serde_json::from_slice(&body)?))
}

#[tokio::test]
async fn the_gateway_serves_https_and_takes_a_renewed_certificate_without_a_restart()
-> Result<(), Error> {
    let pki = Pki::new("gateway")?;
    let first = pki.issue("gateway", false)?;
    let config = config_file(&pki)?;
    let env = own_ports(&[
        (
            "HANDOFF__GATEWAY__TLS__CERT",
            pki.path("gateway.pem").display().to_string(),
        ),
        (
            "HANDOFF__GATEWAY__TLS__KEY",
            pki.path("gateway.key").display().to_string(),
        ),
    ]);
    let (_running, line) = spawn(env!("CARGO_BIN_EXE_handoff"), &config, &env)?;
    let gateway: SocketAddr = field(&line, "gateway")?.parse()?;

    let (shown, json) = https_callback(&pki, gateway, "tls-1").await?;
    assert_eq!(shown, first, "the configured certificate");
    assert_eq!(json["ActionStatus"], "OK", "{json}");
    // Plain HTTP on the HTTPS port gets no answer.
    assert!(
        request(gateway, "POST", &signed_uri(now_secs()), body("plain"))
            .await
            .is_err()
    );

    // Renewed on disk: served from the next handshake on (files are looked at once a second).
    let renewed = pki.issue("gateway", false)?;
    let shown = until_shown(&renewed, || async {
        Ok(https_callback(&pki, gateway, "tls-2").await?.0)
    })
    .await?;
    assert_eq!(shown, renewed, "the renewed certificate is served");
    Ok(())
}

/// What `handshake` shows once it shows `wanted`, or after six seconds of asking.
async fn until_shown<F, T>(wanted: &[u8], handshake: F) -> Result<Vec<u8>, Error>
where
    F: Fn() -> T,
    T: std::future::Future<Output = Result<Vec<u8>, Error>>,
{
    let mut shown = Vec::new();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        shown = handshake().await?;
        if shown == wanted {
            break;
        }
    }
    Ok(shown)
}

/// The router alone over TLS, requiring client certificates from the test CA.
fn tls_router(pki: &Pki, config: &PathBuf) -> Result<(Process, String), Error> {
    pki.issue("router", false)?;
    let env = own_ports(&[
        (
            "HANDOFF__ROUTER__TLS__CERT",
            pki.path("router.pem").display().to_string(),
        ),
        (
            "HANDOFF__ROUTER__TLS__KEY",
            pki.path("router.key").display().to_string(),
        ),
        (
            "HANDOFF__ROUTER__TLS__CLIENT_CA",
            pki.path("ca.pem").display().to_string(),
        ),
    ]);
    let (process, line) = spawn(env!("CARGO_BIN_EXE_handoff-router"), config, &env)?;
    Ok((process, field(&line, "router")?))
}

/// A gateway alone asking `url` with `extra` settings; the AgentGroupId of one callback.
async fn group_through(
    config: &PathBuf,
    url: String,
    extra: &[(&'static str, String)],
) -> Result<serde_json::Value, Error> {
    let mut env = own_ports(extra);
    env.push(("HANDOFF__GATEWAY__ROUTER_URL", url));
    let (_gateway, line) = spawn(env!("CARGO_BIN_EXE_handoff-gateway"), config, &env)?;
    let gateway: SocketAddr = field(&line, "gateway")?.parse()?;
    let reply = request(gateway, "POST", &signed_uri(now_secs()), body("over-tls")).await?;
    Ok(reply.json["AgentGroupId"].clone())
}

#[tokio::test]
async fn the_router_serves_grpc_over_tls_to_gateways_with_a_client_certificate() -> Result<(), Error>
{
    let pki = Pki::new("router")?;
    let config = config_file(&pki)?;
    let (_router, addr) = tls_router(&pki, &config)?;
    pki.issue("client", true)?;
    let ca = (
        "HANDOFF__GATEWAY__ROUTER_CA",
        pki.path("ca.pem").display().to_string(),
    );
    let identity = [
        (
            "HANDOFF__GATEWAY__ROUTER_CERT",
            pki.path("client.pem").display().to_string(),
        ),
        (
            "HANDOFF__GATEWAY__ROUTER_KEY",
            pki.path("client.key").display().to_string(),
        ),
    ];
    let https = format!("https://{addr}");

    let mut trusted = vec![ca.clone()];
    trusted.extend(identity.iter().cloned());
    let routed = group_through(&config, https.clone(), &trusted).await?;
    assert_eq!(routed, 6521, "routed by the router over TLS");
    // Without a client certificate the router refuses the handshake: the fallback answers.
    let refused = group_through(&config, https, &[ca]).await?;
    assert_eq!(refused, 9000);
    // Plaintext to a TLS router gets nowhere either.
    let plain = group_through(&config, format!("http://{addr}"), &[]).await?;
    assert_eq!(plain, 9000);
    Ok(())
}

/// A `redis-server` of the test's own speaking only TLS (a certificate from `pki`), on a
/// free loopback port; killed on drop. `None` where redis-server is not installed (outside
/// CI).
struct TlsRedis(std::process::Child, u16);

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl TlsRedis {
    fn start(pki: &Pki) -> Result<Option<Self>, Error> {
        if !crate::redis::available()? {
            return Ok(None);
        }
        pki.issue("redis", false)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let path = |name: &str| pki.path(name).display().to_string();
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--tls-cert-file", &path("redis.pem")])
            .args(["--tls-key-file", &path("redis.key")])
            .args(["--tls-ca-cert-file", &path("ca.pem")])
            .args(["--tls-auth-clients", "no"])
            .arg("--dir")
            .arg(&pki.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let redis = Self(child, port);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Some(redis));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("the TLS redis-server never listened".into())
    }
}

#[tokio::test]
async fn the_redis_store_speaks_tls_to_a_rediss_server() -> Result<(), Error> {
    use handoff_proto::router::v1::{
        AssignHumanRequest, ListAgentsRequest, router_service_client::RouterServiceClient,
    };
    let pki = Pki::new("rediss")?;
    let Some(redis) = TlsRedis::start(&pki)? else {
        return Ok(());
    };
    let url = format!("rediss://127.0.0.1:{}", redis.1);
    let ca = pki.path("ca.pem").display().to_string();
    let env = |ca: Option<&String>| {
        let mut env = vec![
            ("HANDOFF__ROUTER__STORE__URL", url.clone()),
            ("HANDOFF__ROUTER__STORE__TIMEOUT", "500ms".to_owned()),
        ];
        if let Some(ca) = ca {
            env.push(("HANDOFF__ROUTER__STORE__TLS_CA", ca.clone()));
        }
        env
    };
    // A server whose CA the router was not told of is never spoken to: the router starts
    // (as it does while Redis is down) and answers UNAVAILABLE.
    let untrusted = crate::support::launch(crate::support::CONFIG, &env(None), true, false).await?;
    let mut client =
        RouterServiceClient::connect(format!("http://{}", untrusted.router.ok_or("no router")?))
            .await?;
    let refused = client
        .list_agents(ListAgentsRequest {
            sdk_app_id: 1_400_000_001,
            group_id: None,
        })
        .await
        .err()
        .ok_or("spoke to an untrusted server")?;
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    untrusted.shutdown().await?;

    let running =
        crate::support::launch(crate::support::CONFIG, &env(Some(&ca)), true, false).await?;
    let router = running.router.ok_or("no router")?;
    let mut client = RouterServiceClient::connect(format!("http://{router}")).await?;
    let answer = client
        .assign_human(AssignHumanRequest {
            sdk_app_id: 1_400_000_001,
            session_id: "over-rediss".into(),
            client_user_id: "c-1".into(),
            ..AssignHumanRequest::default()
        })
        .await?
        .into_inner();
    let reserved = answer
        .decision
        .map(|d| d.reserved_agent_id)
        .unwrap_or_default();
    assert_eq!(reserved, "ann@example.com");
    // The reservation is in Redis: the router reads it back as ann's load.
    let listed = client
        .list_agents(ListAgentsRequest {
            sdk_app_id: 1_400_000_001,
            group_id: None,
        })
        .await?
        .into_inner();
    let ann = listed
        .agents
        .iter()
        .find(|row| {
            row.agent
                .as_ref()
                .is_some_and(|a| a.id == "ann@example.com")
        })
        .map(|row| row.active);
    assert_eq!(ann, Some(1));
    running.stop.stop();
    Ok(())
}

/// The certificate the server at `addr` shows in a TLS handshake (offering h2, as gRPC does).
async fn shown_by(pki: &Pki, addr: SocketAddr) -> Result<Vec<u8>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca.der().to_vec()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .ok_or_else(|| "no certificate shown".into())
}

#[tokio::test]
async fn the_router_takes_a_renewed_certificate_without_a_restart() -> Result<(), Error> {
    let pki = Pki::new("router-renewal")?;
    let first = pki.issue("router", false)?;
    let config = config_file(&pki)?;
    let env = own_ports(&[
        (
            "HANDOFF__ROUTER__TLS__CERT",
            pki.path("router.pem").display().to_string(),
        ),
        (
            "HANDOFF__ROUTER__TLS__KEY",
            pki.path("router.key").display().to_string(),
        ),
    ]);
    let (_router, line) = spawn(env!("CARGO_BIN_EXE_handoff-router"), &config, &env)?;
    let addr: SocketAddr = field(&line, "router")?.parse()?;
    assert_eq!(shown_by(&pki, addr).await?, first);
    let renewed = pki.issue("router", false)?;
    let shown = until_shown(&renewed, || shown_by(&pki, addr)).await?;
    assert_eq!(shown, renewed, "the renewed certificate is served");
    Ok(())
}

/// With `[router.tls]` the console serves HTTPS with the router's certificate, and its
/// session cookie is `Secure`.
#[tokio::test]
async fn the_console_serves_https_and_its_cookie_is_secure() -> Result<(), Error> {
    let pki = Pki::new("console")?;
    pki.issue("server", false)?;
    let token = "console-over-tls-token-0123";
    let config = format!(
        "{}\n[router.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[router.console]\nlisten = \"127.0.0.1:0\"\n\n\
         [[router.auth.tokens]]\nname = \"ops\"\ntoken = \"{token}\"\ngrants = [\"all\"]\n",
        crate::support::CONFIG,
        pki.path("server.pem").display(),
        pki.path("server.key").display(),
    );
    let env = [("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())];
    let running = crate::support::launch(&config, &env, true, false).await?;
    let console = running.console.ok_or("no console")?;
    let tcp = TcpStream::connect(console).await?;
    let name = ServerName::IpAddress(console.ip().into());
    let mut tls = pki.connector()?.connect(name, tcp).await?;
    let form = format!("token={token}");
    tls.write_all(
        format!(
            "POST /signin HTTP/1.1\r\nHost: console\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    let cookie = answer
        .lines()
        .find(|line| line.to_lowercase().starts_with("set-cookie:"))
        .ok_or("no cookie")?;
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Plain HTTP to the same port gets no page.
    let mut plain = TcpStream::connect(console).await?;
    plain
        .write_all(b"GET /signin HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n")
        .await?;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut reply),
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&reply).contains("Sign in"),
        "served in the clear"
    );
    running.shutdown().await
}
