//! `achat-server`: parse the command line, set up logging, fit the limits,
//! bind, print the address, run until SIGINT or SIGTERM.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use log::{info, warn};

use achat::config::ServerArgs;

fn main() -> ExitCode {
    let args = ServerArgs::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

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

    let listener = match achat::server::bind(&args.bind) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("achat-server: cannot listen on {}: {e}", args.bind);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            // The one line on standard output: scripts read the port here.
            println!("listening on {addr}");
            let _ = std::io::stdout().flush();
        }
        Err(e) => {
            eprintln!("achat-server: {e}");
            return ExitCode::FAILURE;
        }
    }

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
    let served = system.block_on(achat::server::run(
        listener,
        config,
        achat::server::shutdown_signal(),
    ));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("achat-server: {e}");
            ExitCode::FAILURE
        }
    }
}
