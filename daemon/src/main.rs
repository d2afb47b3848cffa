//! `pacmeshd`: parses flags and config, binds the sockets, runs the daemon
//! until SIGTERM/SIGINT. Exit status 64 for configuration errors.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use pacmeshd::config::{self, RawConfig};
use pacmeshd::mesh::discovery::{mdns::MdnsDiscovery, Discovery};
use pacmeshd::mesh::inflight::NoDownloads;
use pacmeshd::mesh::service::{MeshParts, StaticPeer};
use pacmeshd::mesh::split_static_peer;
use pacmeshd::{setup, Control};

/// sysexits' EX_USAGE: the configuration is wrong, restarting won't help.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let flags = RawConfig::parse();
    if let Some(path) = &flags.gen_mesh_key {
        return gen_mesh_key(path);
    }
    if flags.print_include {
        print!("{}", include_for_installed_pacman());
        return ExitCode::SUCCESS;
    }
    let print_config = flags.print_config;
    let config = match config::load(flags.clone()) {
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
    // Kept to the end of `main`: dropping it writes the last log lines.
    let _log = if flags.sync_once {
        pacmeshd::log::init_at("warn")
    } else {
        pacmeshd::log::init()
    };
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
    if flags.sync_once {
        return match runtime.block_on(pacmeshd::fullsync::once::run(env)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("pacmeshd: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(serve(flags, config, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pacmeshd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--gen-mesh-key FILE`: writes a new key and says what to do with it.
fn gen_mesh_key(path: &std::path::Path) -> ExitCode {
    match pacmeshd::mesh::link::generate_mesh_key(path) {
        Ok(()) => {
            eprintln!(
                "pacmeshd: wrote a new mesh key to {} (mode 0600). Copy it to every member \
                 and set mesh_key to it; for the packaged service: \
                 chgrp pacmesh {0} && chmod 0640 {0}",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pacmeshd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    flags: RawConfig,
    config: config::Config,
    env: setup::Environment,
) -> anyhow::Result<()> {
    let listeners = bind_http(&config.http_listen, config.http_listen_is_default).await?;
    let mesh_parts = mesh_parts(&config)?;
    let shutdown = CancellationToken::new();
    let (control, control_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(handle_signals(flags, config, control, shutdown.clone()));
    pacmeshd::run(env, listeners, mesh_parts, control_rx, shutdown).await?;
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

/// The mesh's sockets and sources: the QUIC socket bound, mDNS unless
/// `--no-mdns`, and each static peer's addresses (a name that does not
/// resolve now is skipped with a warning).
fn mesh_parts(config: &config::Config) -> anyhow::Result<MeshParts> {
    let socket = std::net::UdpSocket::bind(config.quic_listen)
        .with_context(|| format!("quic_listen {}", config.quic_listen))?;
    info!(addr = %socket.local_addr().unwrap_or(config.quic_listen), "quic listening");
    let mut static_peers = Vec::new();
    for peer in &config.peers {
        // Checked by config validation already.
        let Ok((node, host_port)) = split_static_peer(peer) else {
            continue;
        };
        match std::net::ToSocketAddrs::to_socket_addrs(host_port) {
            Ok(addrs) => static_peers.push(StaticPeer {
                node,
                addrs: addrs.collect(),
            }),
            Err(e) => warn!(peer = %peer, error = %e, "static peer does not resolve; skipped"),
        }
    }
    // Announcements at a static peer's address are dialled wherever it is.
    let statics = static_peers
        .iter()
        .flat_map(|p: &StaticPeer| p.addrs.iter().map(SocketAddr::ip))
        .collect();
    let discovery: Option<Box<dyn Discovery>> = if config.mdns {
        Some(Box::new(MdnsDiscovery::new().with_static_peers(statics)))
    } else {
        None
    };
    Ok(MeshParts {
        socket,
        discovery,
        static_peers,
        in_flight: Arc::new(NoDownloads),
    })
}

/// SIGTERM/SIGINT stop the daemon; SIGHUP reloads the configuration (a
/// bad one is logged and the old one kept; the keys that only a restart
/// applies are named when they changed from `running`'s); SIGUSR1 logs the
/// peer table.
async fn handle_signals(
    flags: RawConfig,
    running: config::Config,
    control: Sender<Control>,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1)) = signals else {
        warn!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                info!(signal = "SIGTERM", "shutting down");
                break;
            }
            _ = int.recv() => {
                info!(signal = "SIGINT", "shutting down");
                break;
            }
            _ = hup.recv() => {
                // Files to read and the mesh key's derivation (100 000
                // PBKDF2 rounds): on the blocking pool.
                let flags = flags.clone();
                let reloaded = tokio::task::spawn_blocking(move || {
                    let config = config::load(flags).map_err(|e| e.to_string())?;
                    let env = setup::resolve(&config).map_err(|e| e.to_string())?;
                    Ok((config, env))
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                match reloaded {
                    Ok((config, env)) => {
                        let restart = running.changes_needing_restart(&config);
                        if !restart.is_empty() {
                            warn!(keys = ?restart, "changed settings take effect at restart");
                        }
                        let _ = control.send(Control::Reload(Box::new(env))).await;
                    }
                    Err(e) => error!(error = %e, "reload failed; keeping the running configuration"),
                }
            }
            _ = usr1.recv() => {
                let _ = control.send(Control::LogPeers).await;
            }
        }
    }
    shutdown.cancel();
}

/// `--print-include`: the include file for the pacman on `PATH`, which is
/// what pacman.conf's users run. Without a pacman that says its version
/// (a machine without pacman, a broken one) it names the daemon with
/// `Server`, which every pacman reads; the note goes to stderr so the
/// output stays the file.
fn include_for_installed_pacman() -> String {
    let version = match pacmesh_conf::installed_pacman_version("pacman".as_ref()) {
        Ok(version) => Some(version),
        Err(e) => {
            eprintln!("pacmeshd: {e}; writing `Server`, which every pacman knows");
            None
        }
    };
    pacmesh_conf::include_file_contents(
        pacmesh_conf::DEFAULT_HTTP_PORT,
        pacmesh_conf::include_directive(version),
    )
}
