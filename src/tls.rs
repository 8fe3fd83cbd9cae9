//! TLS material and TLS failures, shared by the broker and the database connections.
//!
//! Both adapters speak TLS through rustls (lapin through `tcp-stream`, sqlx directly). Two
//! things are ours: reading the operator's certificate files once, at start, so that a bad
//! file is a one-line error before anything connects rather than a failure on every
//! reconnect; and telling a *refused certificate* (the peer's certificate is not trusted, or
//! the peer refused ours) from a handshake that merely broke. Retrying the first cannot help
//! until an operator changes a setting, so it must stop the process with a clear message
//! instead of reconnecting forever; the second is an ordinary transient failure.

use std::error::Error as StdError;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Largest certificate or key file read: files come from outside and stay bounded.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The PEM material of a TLS client: extra trusted CA certificates and an optional client
/// identity for mutual TLS. Cheap to clone; its `Debug` never shows the key.
#[derive(Clone, Default)]
pub struct TlsFiles {
    ca_pem: Option<Arc<str>>,
    identity: Option<Arc<Identity>>,
}

struct Identity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

impl TlsFiles {
    /// Read and check the files: every file must exist, be at most 1 MiB and hold what its
    /// flag promises (certificates; one private key matching the client certificate). The
    /// certificate and the key go together. Errors name the flag and the file, in one line.
    pub fn load(
        ca: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<TlsFiles, String> {
        let ca_pem = match ca {
            Some(path) => {
                let pem = read_pem("--amqp-ca-file", path)?;
                let certs = certificates("--amqp-ca-file", path, &pem)?;
                // What lapin will add to its roots: refuse a file whose certificates it would
                // silently skip, rather than discover it as an untrusted broker later.
                let mut roots = rustls::RootCertStore::empty();
                let (_, ignored) = roots.add_parsable_certificates(certs);
                if ignored > 0 {
                    return Err(format!(
                        "--amqp-ca-file {}: {ignored} certificate(s) are not usable as trust anchors",
                        path.display()
                    ));
                }
                let text = String::from_utf8(pem).map_err(|_| {
                    format!("--amqp-ca-file {}: not a PEM text file", path.display())
                })?;
                Some(Arc::from(text))
            }
            None => None,
        };
        let identity = match (client_cert, client_key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err("--amqp-client-cert needs --amqp-client-key (mutual TLS)".into());
            }
            (None, Some(_)) => {
                return Err("--amqp-client-key needs --amqp-client-cert (mutual TLS)".into());
            }
            (Some(cert), Some(key)) => {
                let cert_pem = read_pem("--amqp-client-cert", cert)?;
                let key_pem = read_pem("--amqp-client-key", key)?;
                let chain = certificates("--amqp-client-cert", cert, &cert_pem)?;
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    format!(
                        "--amqp-client-key {}: no PEM private key ({e})",
                        key.display()
                    )
                })?;
                check_pair(chain, key_der).map_err(|e| {
                    format!(
                        "--amqp-client-cert {} and --amqp-client-key {}: {e}",
                        cert.display(),
                        key.display()
                    )
                })?;
                Some(Arc::new(Identity { cert_pem, key_pem }))
            }
        };
        Ok(TlsFiles { ca_pem, identity })
    }

    /// True when any file was given.
    pub fn is_set(&self) -> bool {
        self.ca_pem.is_some() || self.identity.is_some()
    }

    /// The extra CA certificates, PEM.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The client certificate chain and key, PEM.
    pub fn client_identity(&self) -> Option<(&[u8], &[u8])> {
        self.identity
            .as_deref()
            .map(|i| (i.cert_pem.as_slice(), i.key_pem.as_slice()))
    }
}

fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let mut out = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if out.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{flag} {}: larger than {MAX_PEM_BYTES} bytes",
            path.display()
        ));
    }
    Ok(out)
}

fn certificates(
    flag: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {}: not PEM certificates ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// Build a client configuration with the identity: rustls checks that the key is usable and
/// belongs to the certificate, the check the handshake would otherwise make much later.
fn check_pair(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(), rustls::Error> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain, key)
        .map(|_| ())
}

/// If `err` (or anything in its source chain) is a TLS certificate refusal, a one-line reason:
/// the peer's certificate is not trusted or not valid for the name we connected to, or the
/// peer refused our certificate (or sent none we could verify). `None` for everything else,
/// including a handshake cut short by the network.
pub fn certificate_refusal(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return refusal(tls);
        }
        // An io::Error's payload is not always exposed as its `source`.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return refusal(tls);
        }
        cur = e.source();
    }
    None
}

fn refusal(e: &rustls::Error) -> Option<String> {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            Some(e.to_string())
        }
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            | A::HandshakeFailure,
        ) => Some(format!("the server refused our TLS client ({e})")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unpaired_files_are_one_line_errors() {
        let e = TlsFiles::load(Some(Path::new("/nonexistent/ca.pem")), None, None).unwrap_err();
        assert!(e.starts_with("--amqp-ca-file /nonexistent/ca.pem: "), "{e}");
        assert!(!e.contains('\n'));
        let e = TlsFiles::load(None, Some(Path::new("/x.pem")), None).unwrap_err();
        assert!(e.contains("needs --amqp-client-key"), "{e}");
        let e = TlsFiles::load(None, None, Some(Path::new("/x.pem"))).unwrap_err();
        assert!(e.contains("needs --amqp-client-cert"), "{e}");
        assert!(!TlsFiles::load(None, None, None).unwrap().is_set());
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = TlsFiles::load(Some(&path), None, None).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(TlsFiles::load(Some(&path), None, None).is_err());
    }

    #[test]
    fn refusals_are_told_from_broken_handshakes() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let why = certificate_refusal(&refused).unwrap();
        assert!(why.contains("invalid peer certificate"), "{why}");
        let alert = std::io::Error::other(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired,
        ));
        assert!(certificate_refusal(&alert).is_some());
        let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(certificate_refusal(&cut), None);
        let odd = std::io::Error::other(rustls::Error::DecryptError);
        assert_eq!(certificate_refusal(&odd), None);
    }
}
