//! Certificates made at test time: a private CA and leaf certificates it signs. Shared by
//! the TLS tests of the server, the mio client and the tokio driver (`#[path]`-included).

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use ws6455_tls::{self as tls, rustls};

/// A private certificate authority.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate chain and its key, as PEM.
pub(crate) struct Leaf {
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ws6455 test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `names` (DNS names or IP literals), valid now unless `expired`.
    pub(crate) fn issue(&self, names: &[&str], expired: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client configuration trusting this CA (besides the public roots).
    pub(crate) fn client_config(&self) -> Arc<rustls::ClientConfig> {
        tls::client_config_with_extra_roots(self.pem().as_bytes()).unwrap()
    }
}

impl Leaf {
    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        tls::server_config_from_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }
}
