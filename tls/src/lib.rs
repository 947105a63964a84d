//! ws6455-tls: rustls configurations for both sides, shared by every ws6455 driver (mio,
//! tokio): a server's certificate chain and key from PEM (files or memory) or DER, a
//! client's root store (Mozilla's roots from `webpki-roots`, plus private CAs). rustls
//! itself is re-exported as [`rustls`].
//!
//! Both sides advertise ALPN `http/1.1`: a WebSocket upgrade is an HTTP/1.1 request, and a
//! browser that also offers `h2` must not be told to speak HTTP/2 to us.

#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use rustls;

mod verify;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// What a failed TLS handshake was, read out of the I/O error a rustls stream returns:
/// a certificate problem apart, so that "untrusted", "expired" and "wrong name" read as
/// such in every driver's connect error.
#[derive(Clone, Debug, PartialEq)]
pub enum HandshakeFailure {
    /// The peer's certificate is not acceptable.
    Certificate(rustls::CertificateError),
    /// Anything else rustls refused (no common version or cipher, an alert...).
    Tls(rustls::Error),
}

/// The TLS failure inside `error`, if rustls caused it (`None`: a plain I/O error).
pub fn handshake_failure(error: &io::Error) -> Option<HandshakeFailure> {
    let inner = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match inner {
        rustls::Error::InvalidCertificate(reason) => HandshakeFailure::Certificate(reason.clone()),
        other => HandshakeFailure::Tls(other.clone()),
    })
}

/// What is wrong with a refused server certificate and what to do about it, to follow
/// "the TLS certificate of HOST": the one wording every client uses.
pub fn certificate_problem(reason: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match reason {
        E::UnknownIssuer => "is not signed by a trusted root (self-signed or a private CA? \
                             trust that certificate or its CA: --ca FILE, or \
                             client_config_with_extra_roots; for a test only, --insecure)"
            .to_owned(),
        E::Expired | E::ExpiredContext { .. } => {
            "has expired (renew it on the server, or check this machine's clock)".to_owned()
        }
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "is not valid yet (check this machine's clock)".to_owned()
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "was issued for another name (connect with a name it lists)".to_owned()
        }
        E::Revoked => "has been revoked".to_owned(),
        other => format!("was refused: {other:?}"),
    }
}

/// Why a TLS configuration could not be built. Each variant names what to fix.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A certificate or key file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The error reading it.
        error: io::Error,
    },
    /// The PEM text holds no `CERTIFICATE` block.
    NoCertificate,
    /// The PEM text holds no private key (PKCS#8, PKCS#1 or SEC1).
    NoPrivateKey,
    /// The PEM text is malformed.
    Pem(rustls::pki_types::pem::Error),
    /// rustls refused the material: a key that does not match the certificate, an
    /// unsupported key type, a root certificate it cannot parse.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::Read { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            TlsConfigError::NoCertificate => f.write_str("no CERTIFICATE block in the PEM text"),
            TlsConfigError::NoPrivateKey => {
                f.write_str("no private key (PKCS#8, PKCS#1 or SEC1) in the PEM text")
            }
            TlsConfigError::Pem(e) => write!(f, "malformed PEM: {e}"),
            TlsConfigError::Rustls(e) => write!(f, "unusable certificate or key: {e}"),
        }
    }
}

impl std::error::Error for TlsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsConfigError::Read { error, .. } => Some(error),
            TlsConfigError::Pem(e) => Some(e),
            TlsConfigError::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

/// The ALPN protocol both sides offer.
const ALPN_HTTP11: &[u8] = b"http/1.1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Explicit, so that another crate enabling a second provider cannot make the
    // process-wide default ambiguous (rustls would panic then).
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|error| TlsConfigError::Read {
        path: path.to_owned(),
        error,
    })
}

/// Every certificate in `pem`, in order (a chain starts with the end-entity certificate).
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsConfigError::Pem)?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    Ok(certs)
}

/// The first private key in `pem`.
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(TlsConfigError::NoPrivateKey),
        Err(e) => Err(TlsConfigError::Pem(e)),
    }
}

/// A server configuration presenting `chain` (end-entity certificate first) with `key`.
/// TLS 1.2 and 1.3 with rustls' safe defaults; no client certificates asked for.
pub fn server_config_from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsConfigError::Rustls)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A server configuration from PEM text: the certificate chain and the private key
/// (they may be the same text).
pub fn server_config_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    server_config_from_der(
        certificates_from_pem(chain_pem)?,
        private_key_from_pem(key_pem)?,
    )
}

/// A server configuration from PEM files (what `--tls-cert` / `--tls-key` take).
pub fn server_config_from_pem_files(
    chain: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    server_config_from_pem(&read_file(chain)?, &read_file(key)?)
}

/// A client configuration that verifies servers against `roots` only.
pub fn client_config_with_roots(roots: RootCertStore) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        // The ring provider supports every safe default version: this cannot fail.
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"));
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Arc::new(config)
}

fn webpki_root_store() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The default client configuration: Mozilla's root set (`webpki-roots`), built once per
/// process.
pub fn default_client_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| client_config_with_roots(webpki_root_store()))
        .clone()
}

/// A client configuration that trusts Mozilla's roots and, in addition, every certificate
/// in `ca_pem` (a private CA, a self-signed test certificate). A server certificate that
/// is byte for byte one of them is accepted even when it is marked CA:TRUE (what
/// `openssl req -x509` makes by default, and what curl, Python and Node accept as a
/// trust anchor); its validity dates and names are still checked.
pub fn client_config_with_extra_roots(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut roots = webpki_root_store();
    let given = certificates_from_pem(ca_pem)?;
    for cert in &given {
        roots.add(cert.clone()).map_err(TlsConfigError::Rustls)?;
    }
    let verifier =
        verify::WithPinned::new(roots, given, provider()).map_err(TlsConfigError::Rustls)?;
    Ok(client_config_with_verifier(Arc::new(verifier)))
}

/// A client configuration that does not verify the server's certificate at all: the
/// traffic is encrypted, but to whoever answers, so anyone on the path can read and
/// change it. For tests against a server whose certificate you cannot get; say so to the
/// user every time it is used (`ws6455-client --insecure` prints a warning per connect).
pub fn client_config_without_verification() -> Arc<ClientConfig> {
    client_config_with_verifier(Arc::new(verify::NoVerification::new(provider())))
}

fn client_config_with_verifier(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"));
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Arc::new(config)
}

/// [`client_config_with_extra_roots`] with the CA certificates read from a PEM file (what
/// `ws6455-client --ca FILE` takes).
pub fn client_config_with_extra_roots_file(
    ca_file: &Path,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    client_config_with_extra_roots(&read_file(ca_file)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_blocks_names_what_is_missing() {
        let text = b"not a pem file\n";
        assert!(matches!(
            certificates_from_pem(text),
            Err(TlsConfigError::NoCertificate)
        ));
        assert!(matches!(
            private_key_from_pem(text),
            Err(TlsConfigError::NoPrivateKey)
        ));
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let error = server_config_from_pem_files(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/cert.pem"),
            "{error}"
        );
    }

    #[test]
    fn default_client_config_trusts_the_webpki_roots_and_offers_http11() {
        let config = default_client_config();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(Arc::ptr_eq(&config, &default_client_config()));
    }
}
