//! Two things about a connection's socket that tokio does not offer: a
//! capped send buffer, and how much of what was written the kernel still
//! holds.
//!
//! - **The cap.** Linux grows a socket's send buffer as it sees fit (to
//!   4 MiB on loopback), so a reader that stopped could make the kernel
//!   hold megabytes per connection, outside any limit of the server's. A
//!   send buffer set explicitly stays at that size.
//! - **The unsent bytes** (`SIOCOUTQ`): bytes written to the socket that
//!   the client has not acknowledged yet. When that number falls, the
//!   client is reading, even if the socket has not become writable again;
//!   the session's stall rule looks at it before cutting a reader off.
//!
//! `SIOCOUTQ` is an `ioctl`, the crate's second `unsafe` call (the first
//! is in [`crate::sched`]).

use std::io;

use tokio::net::TcpStream;

/// The send buffer asked for (`SO_SNDBUF`; Linux doubles the value for its
/// own bookkeeping, so the kernel holds at most twice this per
/// connection). Enough for a reader on a fast link: the server writes
/// whenever a third of it is free.
pub const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// Sets the connection's send buffer to [`SEND_BUFFER_BYTES`].
pub fn cap_send_buffer(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).set_send_buffer_size(SEND_BUFFER_BYTES)
}

/// Bytes written to the socket and not yet acknowledged by the client.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn unsent_bytes(stream: &TcpStream) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut unsent: libc::c_int = 0;
    // SAFETY: the descriptor is a socket owned by `stream` and open for
    // the length of the call; TIOCOUTQ (SIOCOUTQ for sockets) writes one
    // `int` through the pointer, which points at a live, aligned `c_int`.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut unsent) };
    if rc == 0 {
        Ok(usize::try_from(unsent).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes written to the socket and not yet acknowledged by the client
/// (not known outside Linux).
#[cfg(not(target_os = "linux"))]
pub fn unsent_bytes(_: &TcpStream) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SIOCOUTQ exists on Linux only",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn unsent_bytes_fall_as_the_client_reads() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        cap_send_buffer(&server).unwrap();
        let size = socket2::SockRef::from(&server).send_buffer_size().unwrap();
        assert!(size <= 2 * SEND_BUFFER_BYTES, "{size}");
        assert_eq!(unsent_bytes(&server).unwrap(), 0);
        // More than the client's receive buffer and our send buffer hold:
        // some stays unsent until the client reads.
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0;
        while let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), server.write(&chunk)).await
        {
            written += n;
        }
        let before = unsent_bytes(&server).unwrap();
        assert!(before > 0 && before <= written, "{before} of {written}");
        let mut sink = vec![0; 1 << 20];
        assert!(client.read(&mut sink).await.unwrap() > 0);
        // Reading frees the client's window; the kernel sends the rest.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let now = unsent_bytes(&server).unwrap();
            if now < before {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "unsent stayed at {now}"
            );
            tokio::task::yield_now().await;
        }
    }
}
