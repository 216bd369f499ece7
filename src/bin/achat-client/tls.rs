//! `--tls`: which certificates the client trusts, and the handshake.
//!
//! Trust comes from `--ca FILE` (a private CA, or a self-signed server
//! certificate, in PEM) or else from the system's store, read with
//! `rustls-native-certs`: the roots the operating system and its
//! administrator keep up to date, which a bundled list (`webpki-roots`)
//! would only repeat, and staler. The name checked against the certificate
//! is the host of the address, or `--server-name` (to connect by IP
//! address to a server whose certificate carries its DNS name).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::connection::CONNECT_TIMEOUT;
use crate::error::ClientError;

/// What `--tls` connects with: the roots trusted, the name checked.
pub(crate) struct TlsSettings {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// Whether `--ca` was given (if not, an unknown issuer may be a
    /// private CA the user has not named yet).
    own_ca: bool,
}

impl TlsSettings {
    /// Trusts the certificates in `ca` (PEM), or the system's roots, and
    /// checks the server's certificate against `server_name`, or else the
    /// host of `addr`.
    pub(crate) fn new(
        addr: &str,
        ca: Option<&Path>,
        server_name: Option<&str>,
    ) -> Result<TlsSettings, ClientError> {
        let roots = match ca {
            Some(path) => roots_from_file(path)?,
            None => system_roots()?,
        };
        let name = server_name.unwrap_or_else(|| host_of(addr));
        let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
            ClientError::Usage(format!(
                "'{name}' cannot be checked against a certificate (not a DNS name or IP address)"
            ))
        })?;
        let config = ClientConfig::builder_with_provider(achat::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::TlsSetup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsSettings {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            own_ca: ca.is_some(),
        })
    }

    /// The client's side of the handshake on `tcp`, bounded.
    pub(crate) async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, ClientError> {
        let handshake = self.connector.connect(self.server_name.clone(), tcp);
        let tls_error = |source: std::io::Error| {
            // rustls names the failure in its Display only; an untrusted
            // chain shows as several kinds (UnknownIssuer, or a signature
            // check against the wrong root), a wrong name as one.
            let why = source.to_string();
            let untrusted =
                why.contains("invalid peer certificate") && !why.contains("not valid for name");
            ClientError::Handshake {
                addr: addr.to_owned(),
                hint: if untrusted && !self.own_ca {
                    " (a private CA or a self-signed certificate? trust it with --ca FILE)"
                } else {
                    ""
                },
                source,
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| tls_error(std::io::ErrorKind::TimedOut.into()))?
            .map_err(tls_error)
    }
}

/// The host of `HOST:PORT`, without an IPv6 address's brackets.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, ClientError> {
    let bad = |why: String| ClientError::Usage(format!("--ca {}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| match e {
            rustls_pki_types::pem::Error::Io(e) => bad(e.to_string()),
            e => bad(format!("not a PEM certificate file: {e}")),
        })?;
    if certs.is_empty() {
        return Err(bad("no PEM 'CERTIFICATE' section found".to_owned()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, ClientError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(ClientError::TlsSetup(format!(
            "cannot load the system's root certificates ({why}); give the server's CA with --ca FILE"
        )));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_checked_is_the_host() {
        assert_eq!(host_of("chat.example.org:6697"), "chat.example.org");
        assert_eq!(host_of("127.0.0.1:6697"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6697"), "::1");
    }
}
