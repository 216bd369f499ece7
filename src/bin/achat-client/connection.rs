//! The connection to the server, plain TCP or TLS (`--tls`): connecting
//! and handshaking within a bounded time, and reading what the server
//! sends in pieces of bounded size.
//!
//! Both bounds are there because the other end may be anything: an address
//! that drops packets would hang a connect for minutes, and a peer that
//! never sends a line break would grow an unbounded line buffer.
//!
//! The two halves are boxed trait objects, so the modes do not care which
//! kind of connection they have; a client's few lines a second do not
//! notice the indirection. Writers flush after each line: a TLS write may
//! leave its record in rustls' buffer until then.

use std::io;
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;

use crate::error::ClientError;
use crate::tls::TlsSettings;

/// The reading half of a connection.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Unpin + Send>;
/// The writing half of a connection.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Unpin + Send>;

/// How long connecting may take: an address that drops packets would
/// otherwise hang the client for minutes.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest piece of a line handled at once, in either direction: a
/// longer line is passed on in pieces, so a peer or a file without line
/// breaks cannot make the client's memory grow.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;

/// The connection: a buffered reading half, a writing half. Split so that
/// pipe mode can send from one task while it reads in another.
pub(crate) struct Connection {
    /// What the server sends, read with [`read_piece`].
    pub(crate) reader: BufReader<ReadHalf>,
    /// Where the client's lines go.
    pub(crate) writer: WriteHalf,
}

impl Connection {
    /// Connects to `addr`, and with `tls` makes a TLS connection of it;
    /// each step gives up after [`CONNECT_TIMEOUT`].
    pub(crate) async fn open(
        addr: &str,
        tls: Option<&TlsSettings>,
    ) -> Result<Connection, ClientError> {
        let connect_error = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(io::ErrorKind::TimedOut.into()))?
            .map_err(connect_error)?;
        // Typed lines go out at once; pipe mode batches its own writes.
        stream.set_nodelay(true).map_err(ClientError::Lost)?;
        let (reader, writer): (ReadHalf, WriteHalf) = match tls {
            None => {
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            Some(tls) => {
                let stream = tls.connect(addr, stream).await?;
                let (reader, writer) = tokio::io::split(stream);
                (Box::new(reader), Box::new(writer))
            }
        };
        Ok(Connection {
            reader: BufReader::new(reader),
            writer,
        })
    }
}

/// Sends `bytes` (whole lines) and flushes them out.
pub(crate) async fn send(writer: &mut WriteHalf, bytes: &[u8]) -> Result<(), ClientError> {
    writer.write_all(bytes).await.map_err(ClientError::Lost)?;
    writer.flush().await.map_err(ClientError::Lost)
}

/// Reads the next piece of the server's output into `buf`: a line with its
/// `\n`, or [`MAX_CHUNK`] bytes of a longer one, or the unterminated rest
/// before the end. Returns `false` at the end of the stream.
///
/// Cancel-safe: bytes read before a cancellation stay in `buf`, and the
/// next call goes on from there.
pub(crate) async fn read_piece<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    let room = MAX_CHUNK.saturating_sub(buf.len()).max(1);
    let n = (&mut *reader)
        .take(room as u64)
        .read_until(b'\n', buf)
        .await?;
    Ok(n > 0 || !buf.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pieces_end_at_newlines_or_at_the_cap() {
        let mut input = Vec::new();
        input.extend_from_slice(b"one\n");
        input.extend(std::iter::repeat_n(b'x', MAX_CHUNK + 10));
        input.extend_from_slice(b"\ntail");
        let mut reader = BufReader::new(&input[..]);
        let mut buf = Vec::new();
        assert!(read_piece(&mut reader, &mut buf).await.unwrap());
        assert_eq!(buf, b"one\n");
        buf.clear();
        assert!(read_piece(&mut reader, &mut buf).await.unwrap());
        assert_eq!(buf.len(), MAX_CHUNK);
        buf.clear();
        assert!(read_piece(&mut reader, &mut buf).await.unwrap());
        assert_eq!(buf.len(), 11);
        buf.clear();
        assert!(read_piece(&mut reader, &mut buf).await.unwrap());
        assert_eq!(buf, b"tail");
        buf.clear();
        assert!(!read_piece(&mut reader, &mut buf).await.unwrap());
    }
}
