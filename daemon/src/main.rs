//! `pacmeshd`: parses flags and config, binds the sockets, runs the daemon
//! until SIGTERM/SIGINT. Exit status 64 for configuration errors.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use pacmeshd::config::{self, RawConfig};
use pacmeshd::setup;

/// sysexits' EX_USAGE: the configuration is wrong, restarting won't help.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let flags = RawConfig::parse();
    if flags.print_include {
        print!(
            "{}",
            pacmesh_conf::include_file_contents(pacmesh_conf::DEFAULT_HTTP_PORT)
        );
        return ExitCode::SUCCESS;
    }
    let print_config = flags.print_config;
    let config = match config::load(flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pacmeshd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    init_tracing();
    let env = match setup::resolve(&config) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("pacmeshd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pacmeshd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pacmeshd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: config::Config, env: setup::Environment) -> anyhow::Result<()> {
    let listeners = bind_http(&config.http_listen, config.http_listen_is_default).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    pacmeshd::run(env, listeners, shutdown).await?;
    info!("stopped");
    Ok(())
}

/// Binds every HTTP address. With the built-in default, a host without
/// IPv6 loopback still starts on 127.0.0.1 alone.
async fn bind_http(addrs: &[SocketAddr], lenient: bool) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                info!(addr = %listener.local_addr().unwrap_or(*addr), "http listening");
                listeners.push(listener);
            }
            Err(e) if lenient && addr.is_ipv6() => {
                warn!(%addr, error = %e, "cannot listen on IPv6 loopback; IPv4 only");
            }
            Err(e) => return Err(e).with_context(|| format!("http_listen {addr}")),
        }
    }
    anyhow::ensure!(!listeners.is_empty(), "no HTTP address could be bound");
    Ok(listeners)
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => info!(signal = "SIGINT", "shutting down"),
    }
    shutdown.cancel();
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PACMESH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}
