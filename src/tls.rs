//! TLS for the server: loading the certificate and key, and the handshake
//! a TLS connection goes through before its session starts.
//!
//! rustls through tokio-rustls, with the `ring` crypto provider: no
//! OpenSSL, and nothing to build but Rust and a little C and assembly
//! (`aws-lc-rs`, rustls' default, needs cmake to build). The certificate
//! is loaded once, at start, so that a missing or wrong file stops the
//! server before it listens rather than failing every handshake later.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::transport::Stream;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, or held no PEM section of the kind wanted.
    #[error("{what} {}: {why}", path.display())]
    Pem {
        /// "certificate file" or "key file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("the key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the pair otherwise (an unsupported key type, say).
    #[error("certificate {} with key {}: {why}", cert.display(), key.display())]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        why: rustls::Error,
    },
}

/// Reads a PEM certificate chain (the server's certificate first) and its
/// PEM private key (PKCS#8, PKCS#1 or SEC1) and makes the acceptor every
/// TLS connection is handshaken with.
pub fn load_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    fn pem_error<'p>(
        what: &'static str,
        path: &'p Path,
    ) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError + 'p {
        move |e| TlsError::Pem {
            what,
            path: path.to_owned(),
            why: describe_pem_error(e, what),
        }
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(pem_error("certificate file", cert))?;
    if chain.is_empty() {
        return Err(pem_error("certificate file", cert)(
            rustls_pki_types::pem::Error::NoItemsFound,
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(pem_error("key file", key))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, private_key)
        })
        .map_err(|why| match why {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                }
            }
            why => TlsError::Refused {
                cert: cert.to_owned(),
                key: key.to_owned(),
                why,
            },
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The crypto provider of both sides, `ring`'s.
///
/// rustls deprecates it for lacking post-quantum key exchange
/// (X25519MLKEM768, which its `aws-lc-rs` provider has): recorded traffic
/// could be read by a future quantum computer. The price of `aws-lc-rs`
/// is cmake and a C toolchain for every build; for a chat server, `ring`'s
/// classical X25519 and P-256 are the choice until `ring` gains ML-KEM.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn describe_pem_error(e: rustls_pki_types::pem::Error, what: &str) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => {
            let wanted = if what.starts_with("key") {
                "PRIVATE KEY"
            } else {
                "CERTIFICATE"
            };
            format!("no PEM '{wanted}' section found (is it a PEM file?)")
        }
        other => format!("not valid PEM: {other}"),
    }
}

/// Runs the server's side of the TLS handshake on `tcp`, for at most
/// `limit` (the login timeout: a client that stalls the handshake is
/// treated as one that does not log in). A handshake that fails or times
/// out gives the error, for a debug line, and the socket is closed.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limit: Duration,
) -> io::Result<Stream> {
    match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no TLS handshake within {limit:?}"),
        )),
    }
}
