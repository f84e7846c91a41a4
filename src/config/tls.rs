//! `server.yaml`'s `tls`: the certificate of the chat listener's HTTPS addresses
//! (`listen.chat_tls`; nginx's `ssl_certificate` and `ssl_certificate_key`). The files are
//! read and checked here, once per load, so `-t` names a bad file and a SIGHUP with one is
//! refused like any other bad setting while the certificate in force keeps serving. A good
//! new certificate is used from the next handshake on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ConfigError;
use super::source::Source;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM: the server's certificate first, then its intermediates.
    certificate: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    certificate_key: PathBuf,
    /// Offer HTTP/2 by ALPN (nginx's `http2 on`); HTTP/1.1 is always offered.
    #[serde(default = "yes")]
    http2: bool,
}

fn yes() -> bool {
    true
}

/// A loaded certificate chain and key. Compared by fingerprint; never printed in full.
#[derive(Clone)]
pub struct ServerCertificate {
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the chain and the key as loaded: a reload sees whether either changed.
    fingerprint: [u8; 32],
}

impl ServerCertificate {
    /// The first bytes of the chain's and key's SHA-256, for logs.
    pub fn short_fingerprint(&self) -> String {
        self.fingerprint[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl PartialEq for ServerCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServerCertificate({} certificates, sha256 {})",
            self.key.cert.len(),
            self.short_fingerprint()
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub certificate_key: PathBuf,
    pub http2: bool,
    pub server_certificate: ServerCertificate,
}

pub fn validate(raw: RawTls, src: &Source) -> Result<TlsConfig, ConfigError> {
    let certificate = src.resolve(&raw.certificate);
    let certificate_key = src.resolve(&raw.certificate_key);
    let server_certificate = load(&certificate, &certificate_key)
        .map_err(|reason| src.error_at("tls", format!("tls: {reason}")))?;
    Ok(TlsConfig {
        certificate,
        certificate_key,
        http2: raw.http2,
        server_certificate,
    })
}

/// Read a PEM chain and its key and check that they belong together.
pub fn load(certificate: &Path, key: &Path) -> Result<ServerCertificate, String> {
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "cannot read a certificate from {}: {e}",
                certificate.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", certificate.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    let mut hash = Sha256::new();
    for cert in &chain {
        hash.update(cert.as_ref());
    }
    hash.update(private.secret_der());
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| format!("cannot use the private key in {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive is checked at the first handshake.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(format!(
                "the key in {} does not fit the certificate in {}: {e}",
                key.display(),
                certificate.display()
            ));
        }
    }
    Ok(ServerCertificate {
        key: Arc::new(certified),
        fingerprint: hash.finalize().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_pair_loads_and_a_new_pair_differs() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = write_pair(dir.path(), "a");
        let (c2, k2) = write_pair(dir.path(), "b");
        let a = load(&c1, &k1).unwrap();
        assert_eq!(
            a,
            load(&c1, &k1).unwrap(),
            "the same files, the same certificate"
        );
        assert_ne!(a, load(&c2, &k2).unwrap());
        assert!(format!("{a:?}").starts_with("ServerCertificate(1 certificates, sha256 "));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = write_pair(dir.path(), "a");
        let (_, k2) = write_pair(dir.path(), "b");
        let e = load(&c1, &k2).unwrap_err();
        assert!(e.contains("does not fit the certificate"), "{e}");
        let e = load(&dir.path().join("missing.crt"), &k1).unwrap_err();
        assert!(e.contains("missing.crt"), "{e}");
        let e = load(&k1, &k1).unwrap_err();
        assert!(e.contains("no certificate in"), "{e}");
        let e = load(&c1, &c1).unwrap_err();
        assert!(e.contains("cannot read a private key"), "{e}");
    }
}
