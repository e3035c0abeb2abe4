//! TLS fixtures: a throwaway CA and a server certificate for `localhost` and `127.0.0.1`, made
//! per test with rcgen and written as PEM files (what librdkafka, nisshi and ureq read).

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};

pub struct TestCa {
    /// The CA certificate clients trust.
    pub ca_pem: PathBuf,
    /// The server's certificate (signed by the CA) and its PKCS#8 key.
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

impl TestCa {
    /// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
    pub fn new(dir: &Path) -> TestCa {
        std::fs::create_dir_all(dir).expect("tls dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "lightkeeper test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca cert");
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca).expect("server cert");
        let out =
            TestCa { ca_pem: dir.join("ca.pem"), cert_pem: dir.join("server.pem"), key_pem: dir.join("server.key") };
        std::fs::write(&out.ca_pem, ca.pem()).expect("write ca");
        std::fs::write(&out.cert_pem, cert.pem()).expect("write cert");
        std::fs::write(&out.key_pem, key.serialize_pem()).expect("write key");
        out
    }
}
