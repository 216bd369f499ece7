//! A session's connection, plain TCP, TLS over TCP or a WebSocket, as one
//! byte stream.
//!
//! The session reads and writes through [`Stream`] and never asks which
//! kind it has, except where the answer matters: the socket options it
//! sets on the TCP socket underneath ([`Stream::tcp`]: linger for a
//! reset, the unsent bytes; a WebSocket's socket belongs to actix-web),
//! and the shutdown drain ([`Stream::read_now`]), which reads the raw
//! socket for plain TCP and must go through TLS or the WebSocket's frames
//! otherwise (a raw read would tear records or frames apart).
//!
//! An enum, not a trait object: the plain stream stays unboxed and every
//! read or write costs one match, so plain TCP is as fast as before. The
//! TLS stream and the WebSocket are boxed: their state (buffers, keys) is
//! a kilobyte or so, and an enum is as large as its largest variant.

pub mod websocket;

use std::io::{self, IoSlice, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub use websocket::WebSocket;

/// Registers an accepted socket with the current thread's runtime and
/// sets it up the way sessions want it.
///
/// The socket arrives as a `std` stream because a tokio socket stays tied
/// to the runtime that registered it: it is registered here, on the
/// worker that will own it.
pub fn adopt(stream: std::net::TcpStream) -> io::Result<TcpStream> {
    let stream = TcpStream::from_std(stream)?;
    // Output is batched already; Nagle would only add latency.
    stream.set_nodelay(true)?;
    crate::tcp::cap_send_buffer(&stream)?;
    Ok(stream)
}

/// A connection's byte stream: plain TCP, or TLS over TCP.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<TlsStream<TcpStream>>),
    /// A WebSocket (over plain HTTP or HTTPS), upgrade done.
    WebSocket(Box<WebSocket>),
}

/// Which kind of connection a [`Stream`] is: for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// A WebSocket.
    WebSocket,
}

impl Transport {
    /// Its name in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::WebSocket => "websocket",
        }
    }
}

impl Stream {
    /// The TCP socket underneath, for socket options and `SIOCOUTQ`; none
    /// for a WebSocket, whose socket actix-web owns.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(tcp) => Some(tcp),
            Stream::Tls(tls) => Some(tls.get_ref().0),
            Stream::WebSocket(_) => None,
        }
    }

    /// Which kind of connection this is.
    pub fn transport(&self) -> Transport {
        match self {
            Stream::Plain(_) => Transport::Tcp,
            Stream::Tls(_) => Transport::Tls,
            Stream::WebSocket(_) => Transport::WebSocket,
        }
    }

    /// Reads what the socket holds right now, with real system calls
    /// rather than tokio's cached readiness (which could miss bytes that
    /// arrived since the reactor last looked): for the shutdown drain.
    /// `WouldBlock` when nothing is waiting, `Ok(0)` at end of stream.
    pub fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => (&*socket2::SockRef::from(&*tcp)).read(buf),
            Stream::WebSocket(ws) => ws.read_now(buf),
            Stream::Tls(tls) => {
                let (tcp, conn) = tls.get_mut();
                loop {
                    match conn.reader().read(buf) {
                        // Plaintext already decrypted, or a close_notify.
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        // A TCP close without close_notify: end of stream
                        // all the same, for a drain.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                        Err(e) => return Err(e),
                    }
                    // Nothing decrypted is waiting: feed rustls what the
                    // socket holds (WouldBlock ends the drain).
                    if conn.read_tls(&mut &*socket2::SockRef::from(&*tcp))? == 0 {
                        return Ok(0);
                    }
                    conn.process_new_packets().map_err(io::Error::other)?;
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
            Stream::WebSocket(ws) => Pin::new(&mut **ws).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
            Stream::WebSocket(ws) => Pin::new(&mut **ws).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
            Stream::WebSocket(ws) => Pin::new(&mut **ws).poll_write_vectored(cx, bufs),
        }
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
            Stream::WebSocket(ws) => ws.is_write_vectored(),
        }
    }

    /// For TLS, writes out what rustls holds encrypted and unsent (a write
    /// can return having only buffered); nothing to do for plain TCP.
    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
            Stream::WebSocket(ws) => Pin::new(&mut **ws).poll_flush(cx),
        }
    }

    /// For TLS, sends close_notify before the FIN.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
            Stream::WebSocket(ws) => Pin::new(&mut **ws).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

    /// A connected pair: a TLS client, and the server's side as a
    /// [`Stream`], handshake done.
    async fn tls_pair() -> (tokio_rustls::client::TlsStream<TcpStream>, Stream) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let key_der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let server = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = TcpStream::connect(listener.local_addr().unwrap());
        let (tcp, accepted) = tokio::join!(connect, listener.accept());
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let (client, server) = tokio::join!(
            tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp.unwrap()),
            tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(accepted.unwrap().0)
        );
        (client.unwrap(), Stream::Tls(Box::new(server.unwrap())))
    }

    /// `read_now` until it gives something other than `WouldBlock`
    /// (bytes on loopback arrive at once, but not synchronously).
    async fn read_now_when_ready(stream: &mut Stream, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match stream.read_now(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(tokio::time::Instant::now() < deadline, "nothing arrived");
                    tokio::task::yield_now().await;
                }
                other => return other,
            }
        }
    }

    #[tokio::test]
    async fn the_tls_drain_reads_plaintext_then_would_block_then_the_end() {
        let (mut client, mut server) = tls_pair().await;
        assert_eq!(server.transport(), Transport::Tls);
        client.write_all(b"alice\nbob: hi\n").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        while got.len() < 14 {
            let n = read_now_when_ready(&mut server, &mut buf).await.unwrap();
            assert!(n > 0, "end of stream too early");
            got.extend_from_slice(&buf[..n]);
        }
        // Plaintext, not records torn out of the TLS stream.
        assert_eq!(got, b"alice\nbob: hi\n");
        let nothing = server.read_now(&mut buf).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        // close_notify and FIN: the end of the stream.
        client.shutdown().await.unwrap();
        assert_eq!(read_now_when_ready(&mut server, &mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_plain_drain_reads_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut server = Stream::Plain(listener.accept().await.unwrap().0);
        assert_eq!(server.transport(), Transport::Tcp);
        client.write_all(b"alice\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = read_now_when_ready(&mut server, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"alice\n");
        drop(client);
        assert_eq!(read_now_when_ready(&mut server, &mut buf).await.unwrap(), 0);
    }
}
