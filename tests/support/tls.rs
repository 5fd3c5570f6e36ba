//! Certificates for the HTTPS test servers, made by the test: a certificate authority of
//! its own ([`TestCa`]) that signs server certificates for loopback addresses, or a
//! self-signed certificate that nothing trusts.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, SanType};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;

/// A certificate authority made for one test.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signing the CA");
        TestCa { cert, key }
    }

    /// The CA's certificate, PEM, as `--cacert` takes it.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes [`TestCa::pem`] to `path`.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.pem()).expect("writing the CA certificate");
    }

    /// A server configuration whose certificate this CA signed for `ip`.
    pub fn server(&self, ip: [u8; 4]) -> Arc<ServerConfig> {
        let (params, key) = leaf(ip);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing the server certificate");
        server_config(cert.der().clone(), &key)
    }
}

/// A server configuration with a self-signed certificate for `ip`, which no CA vouches for.
pub fn self_signed(ip: [u8; 4]) -> Arc<ServerConfig> {
    let (params, key) = leaf(ip);
    let cert = params.self_signed(&key).expect("self-signing");
    server_config(cert.der().clone(), &key)
}

fn leaf(ip: [u8; 4]) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("server parameters");
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::from(ip))));
    params
        .distinguished_name
        .push(DnType::CommonName, "ratefetch test server");
    (params, KeyPair::generate().expect("server key"))
}

fn server_config(cert: CertificateDer<'static>, key: &KeyPair) -> Arc<ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate and key");
    Arc::new(config)
}
