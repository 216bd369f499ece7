//! Opening client connections: the server's address (or the addresses of
//! a cluster's nodes, client i on the (i mod n)-th, so that neighbours in
//! a ring are on different nodes), the source addresses the client side is
//! spread over (127.0.0.2, 127.0.0.3, ..., 127.0.1.0, ... so that tens of
//! thousands of connections do not exhaust one address's ephemeral ports,
//! and no address holds more than the server's `--max-connections-per-ip`
//! allows), and the file-descriptor limit. Against an IPv6 address the
//! clients share `::1`: run the server with `--max-connections-per-ip 0`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use tokio::net::{TcpSocket, TcpStream};

/// Where and how clients connect.
#[derive(Clone, Debug)]
pub(crate) struct Net {
    /// Never empty.
    addrs: Vec<SocketAddr>,
    sources: Vec<IpAddr>,
    /// The next source address to bind, counting connections (not client
    /// numbers: a scenario that reconnects every hundredth client, as
    /// churn's name check does, would otherwise put them all on a few
    /// sources).
    next_source: Arc<AtomicUsize>,
}

impl Net {
    /// Clients of `addrs` (client i of the (i mod n)-th), connections bound
    /// round-robin to `sources` source addresses 127.0.0.2, 127.0.0.3, ...
    /// counting on into 127.0.1.0 and beyond (0: let the kernel choose).
    pub(crate) fn new(addrs: Vec<SocketAddr>, sources: u16) -> anyhow::Result<Self> {
        if addrs.is_empty() {
            bail!("no server address");
        }
        if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            bail!("{addr} is not a loopback address: load only ever goes to 127.0.0.0/8 or ::1");
        }
        let sources = if sources > 0 && addrs.iter().all(SocketAddr::is_ipv4) {
            // All in 127.0.0.0/16, clear of 127.0.0.1.
            let first = u32::from(Ipv4Addr::new(127, 0, 0, 2));
            (0..u32::from(sources.min(u16::MAX - 2)))
                .map(|k| IpAddr::V4(Ipv4Addr::from(first + k)))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Net {
            addrs,
            sources,
            next_source: Arc::default(),
        })
    }

    /// The address client `i` connects to.
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i % self.addrs.len()]
    }

    /// The nodes' addresses, in order.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// How many nodes (addresses) the clients are spread over.
    pub(crate) fn nodes(&self) -> usize {
        self.addrs.len()
    }

    /// The same nodes, client i now on the ((i + k) mod n)-th: a client
    /// logging in again lands on another node than before.
    pub(crate) fn rotated(&self, k: usize) -> Net {
        let mut addrs = self.addrs.clone();
        let n = addrs.len();
        addrs.rotate_left(k % n);
        Net {
            addrs,
            sources: self.sources.clone(),
            next_source: self.next_source.clone(),
        }
    }

    /// Connects client `i` (TCP_NODELAY: the generator batches its writes
    /// itself). `recv_buffer` sets SO_RCVBUF first when given.
    pub(crate) async fn connect(
        &self,
        i: usize,
        recv_buffer: Option<u32>,
    ) -> io::Result<TcpStream> {
        let addr = self.addr(i);
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.sources.is_empty() {
            // SO_REUSEADDR lets the bind reuse ports still in TIME_WAIT.
            socket.set_reuseaddr(true)?;
            let k = self.next_source.fetch_add(1, Ordering::Relaxed);
            socket.bind(SocketAddr::new(self.sources[k % self.sources.len()], 0))?;
        }
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// The send buffer of a hostile scenario's flooder: small, so that what
/// it has sent is what the server took, not what its own kernel holds
/// (Linux grows a send buffer to `tcp_wmem`'s maximum, 4 MiB here, which
/// would be a backlog of seconds behind a server reading at its pace).
pub(crate) const FLOODER_SEND_BUFFER: usize = 16 * 1024;

/// Sets `stream`'s send buffer to [`FLOODER_SEND_BUFFER`] (the kernel
/// doubles it, and no longer grows it).
pub(crate) fn cap_send_buffer(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).set_send_buffer_size(FLOODER_SEND_BUFFER)
}

/// Raises this process's soft descriptor limit to the hard one; returns it.
pub(crate) fn raise_fd_limit() -> anyhow::Result<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).context("getrlimit(NOFILE)")?;
    rlimit::increase_nofile_limit(hard).context("raising the descriptor limit")
}

/// Resolves `host:port` to the first address.
pub(crate) fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .with_context(|| format!("bad address '{addr}'"))?
        .next()
        .with_context(|| format!("'{addr}' resolves to nothing"))
}

/// Resolves comma-separated `host:port`s, each to its first address.
pub(crate) fn resolve_all(addrs: &str) -> anyhow::Result<Vec<SocketAddr>> {
    addrs.split(',').map(|a| resolve(a.trim())).collect()
}
