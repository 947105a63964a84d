//! Writes a self-signed certificate and its key for trying `wss://` locally:
//!
//! ```text
//! cargo run -p ws6455-server --example self_signed_cert -- DIR [NAME...]
//! ```
//!
//! `DIR/cert.pem` and `DIR/key.pem` are valid for 30 days for the names given (default
//! `localhost` and `127.0.0.1`). Clients must be told to trust `cert.pem`
//! (`ws6455-client --ca DIR/cert.pem`, Python's `ssl` with `cafile=`, or a browser
//! exception): it is not signed by any public CA. For tests and demos only.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: self_signed_cert DIR [NAME...]   (names default to localhost 127.0.0.1)");
        return ExitCode::from(2);
    };
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = vec!["localhost".into(), "127.0.0.1".into()];
    }
    let made = (|| -> Result<(), Box<dyn std::error::Error>> {
        let mut params = rcgen::CertificateParams::new(names.clone())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].clone());
        let now = std::time::SystemTime::now();
        params.not_before = now.into();
        params.not_after = (now + std::time::Duration::from_secs(30 * 24 * 3600)).into();
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cert.pem"), cert.pem())?;
        std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
        Ok(())
    })();
    match made {
        Ok(()) => {
            println!(
                "wrote {0}/cert.pem and {0}/key.pem for {1}",
                dir.display(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("self_signed_cert: {e}");
            ExitCode::FAILURE
        }
    }
}
