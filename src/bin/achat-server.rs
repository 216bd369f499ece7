//! `achat-server`: parse the command line, set up logging, fit the limits,
//! bind, catch the signals, print the address, run until SIGINT or SIGTERM.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use log::{info, warn};

use achat::config::ServerArgs;
use achat::server::ShutdownSignals;

fn main() -> ExitCode {
    let args = ServerArgs::parse();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,actix_server=warn"),
    )
    .init();
    return_freed_memory_promptly();

    let mut config = match args.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("achat-server: {e}");
            return ExitCode::from(2);
        }
    };
    match achat::limits::fit_connections(config.max_connections) {
        Ok(budget) => {
            info!(
                "file descriptors: soft limit {} (was {}), hard limit {}",
                budget.soft, budget.soft_before, budget.hard
            );
            if budget.lowered(config.max_connections) {
                warn!(
                    "--max-connections {} needs more file descriptors than the limit of {} allows; \
                     lowered to {}",
                    config.max_connections, budget.soft, budget.max_connections
                );
                config.max_connections = budget.max_connections;
            }
        }
        Err(e) => warn!("cannot read or raise the file-descriptor limit: {e}"),
    }

    let listen = match args.listen() {
        Ok(listen) => listen,
        Err(e) => {
            eprintln!("achat-server: {e}");
            return ExitCode::from(2);
        }
    };
    // The certificate first: a wrong one stops the server before it
    // listens at all.
    let tls = match &listen.tls {
        Some(tls) => match achat::tls::load_acceptor(&tls.cert, &tls.key) {
            Ok(acceptor) => Some((tls.bind.as_str(), acceptor)),
            Err(e) => {
                eprintln!("achat-server: TLS: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let bind = |addr: &str| {
        achat::server::bind(addr)
            .and_then(|listener| Ok((listener.local_addr()?, listener)))
            .map_err(|e| eprintln!("achat-server: cannot listen on {addr}: {e}"))
    };
    let Ok(plain) = listen.plain.as_deref().map(bind).transpose() else {
        return ExitCode::FAILURE;
    };
    let Ok(tls) = tls
        .map(|(addr, acceptor)| bind(addr).map(|bound| (bound, acceptor)))
        .transpose()
    else {
        return ExitCode::FAILURE;
    };
    let Ok(http) = listen.http.as_deref().map(bind).transpose() else {
        return ExitCode::FAILURE;
    };
    let plain_addr = plain.as_ref().map(|(addr, _)| *addr);
    let tls_addr = tls.as_ref().map(|((addr, _), _)| *addr);
    let http_addr = http.as_ref().map(|(addr, _)| *addr);
    let listeners = achat::server::Listeners {
        plain: plain.map(|(_, listener)| listener),
        tls: tls.map(|((_, listener), acceptor)| (listener, acceptor)),
        http: http.map(|(_, listener)| listener),
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("achat-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let system = actix::System::with_tokio_rt(move || runtime);
    let served = system.block_on(async move {
        // The handlers first, then the line scripts wait for: a signal
        // sent the moment the line is read finds them in place.
        let signals = ShutdownSignals::install()
            .map_err(|e| std::io::Error::other(format!("cannot catch SIGINT/SIGTERM: {e}")))?;
        // The only lines on standard output: scripts read the ports here,
        // the plain one first (scripts that read one line get it).
        if let Some(addr) = plain_addr {
            println!("listening on {addr}");
        }
        if let Some(addr) = tls_addr {
            println!("listening (TLS) on {addr}");
        }
        if let Some(addr) = http_addr {
            let scheme = if tls_addr.is_some() { "https" } else { "http" };
            println!("web client on {scheme}://{addr}/");
        }
        let _ = std::io::stdout().flush();
        achat::server::run(listeners, config, signals.recv()).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("achat-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// jemalloc rather than the system allocator: glibc's malloc keeps what a
/// burst of connections used (measured: 100,000 sessions through the server
/// left it 2.5 times its starting size, and it never went down), while
/// jemalloc returns freed pages to the system (see below).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Has jemalloc give freed memory back to the system about a second after
/// it is freed, from background threads, instead of holding it for reuse
/// indefinitely: a chat server's load comes in bursts.
fn return_freed_memory_promptly() {
    use tikv_jemalloc_ctl::{Access as _, AsName as _};
    let settings: [(&[u8], isize); 4] = [
        (b"arenas.dirty_decay_ms\0", 1000),
        (b"arenas.muzzy_decay_ms\0", 0),
        (b"arena.0.dirty_decay_ms\0", 1000),
        (b"arena.0.muzzy_decay_ms\0", 0),
    ];
    for (key, value) in settings {
        if let Err(e) = key.name().write(value) {
            warn!("allocator setting {}: {e}", String::from_utf8_lossy(key));
        }
    }
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        warn!("cannot start the allocator's background purging: {e}");
    }
}
