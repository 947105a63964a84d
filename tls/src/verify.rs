//! Server certificate verification for clients: webpki against the root store, plus the
//! certificates the user named to trust (`--ca`) accepted as the server's own even when
//! they are marked CA:TRUE, as OpenSSL's `req -x509` makes them by default; and a
//! verifier that checks nothing, for tests only.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// webpki, and for a server certificate that is byte for byte one of `pinned`: its dates
/// and name checked, not its CA flag.
#[derive(Debug)]
pub(crate) struct WithPinned {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl WithPinned {
    pub(crate) fn new(
        roots: RootCertStore,
        pinned: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<WithPinned, Error> {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Error::General(e.to_string()))?;
        Ok(WithPinned { webpki, pinned })
    }
}

/// webpki's refusal of a CA certificate in the server's place.
fn is_ca_used_as_end_entity(error: &Error) -> bool {
    let Error::InvalidCertificate(CertificateError::Other(other)) = error else {
        return false;
    };
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

impl ServerCertVerifier for WithPinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(error)
                if is_ca_used_as_end_entity(&error)
                    && self
                        .pinned
                        .iter()
                        .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                // webpki checks a certificate's dates before its CA flag (an expired one
                // fails as Expired: tested), and its name only after the chain: the name
                // is checked here.
                let cert = webpki::EndEntityCert::try_from(end_entity)
                    .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
                cert.verify_is_valid_for_subject_name(server_name)
                    .map_err(|_| Error::InvalidCertificate(CertificateError::NotValidForName))?;
                Ok(ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Accepts any certificate for any name: the connection is encrypted, but to whoever
/// answers. The handshake signatures are still checked against the certificate's key.
#[derive(Debug)]
pub(crate) struct NoVerification {
    provider: Arc<CryptoProvider>,
}

impl NoVerification {
    pub(crate) fn new(provider: Arc<CryptoProvider>) -> NoVerification {
        NoVerification { provider }
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    /// A self-signed certificate marked CA:TRUE, as `openssl req -x509` makes one.
    fn openssl_style(names: &[&str], expired: bool) -> CertificateDer<'static> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn verify(
        pinned: &[CertificateDer<'static>],
        cert: &CertificateDer<'_>,
        name: &str,
    ) -> Result<(), Error> {
        let mut roots = RootCertStore::empty();
        for p in pinned {
            roots.add(p.clone()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WithPinned::new(roots, pinned.to_vec(), provider).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_given_ca_true_certificate_is_the_servers_own_with_its_names_and_dates_checked() {
        let cert = openssl_style(&["localhost", "127.0.0.1"], false);
        assert_eq!(
            verify(std::slice::from_ref(&cert), &cert, "localhost"),
            Ok(())
        );
        assert_eq!(
            verify(std::slice::from_ref(&cert), &cert, "127.0.0.1"),
            Ok(())
        );
        assert_eq!(
            verify(std::slice::from_ref(&cert), &cert, "example.com"),
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        );
        let expired = openssl_style(&["localhost"], true);
        assert!(matches!(
            verify(std::slice::from_ref(&expired), &expired, "localhost"),
            Err(Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ))
        ));
    }

    #[test]
    fn a_ca_true_certificate_not_given_is_still_refused() {
        let given = openssl_style(&["localhost"], false);
        let other = openssl_style(&["localhost"], false);
        assert!(verify(&[given], &other, "localhost").is_err());
    }
}
