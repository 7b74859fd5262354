//! `testbed`: a deliberately small stand-in for a FetchML service.
//!
//! Why it exists: `cargo xtask` deploys, health-gates, rolls back and probes
//! the stack in each compliance mode, and those tests need a real service
//! running in real Docker containers. This crate implements the service
//! contract honestly (health depends on Redis really answering, jobs really
//! flow through a Redis list) while staying small enough to read in one go.
//!
//! Why std only: the binary is linked with `+crt-static` and shipped in a
//! `FROM scratch` image (no shell, no curl, no libc on disk), and the build
//! machines cannot pull public images. So the HTTP/1.1 server, the RESP
//! client and the compose healthcheck probe are all hand-written here.
//!
//! Usage:
//!   testbed api               serve /health, /api/jobs, /api/slow (and /debug in dev)
//!   testbed worker            consume jobs from Redis, serve /health
//!   testbed healthcheck URL   exit 0 iff GET URL answers 200 with status ok
//!
//! Environment (read once at start-up, see `config.rs`): APP_VERSION,
//! COMPLIANCE_MODE, PORT, REDIS_ADDR, API_TOKEN_FILE, AUDIT_SINK_DIR,
//! TESTBED_BROKEN.

mod config;
mod http;
mod resp;
mod service;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use config::{Config, Role};

const USAGE: &str = "usage: testbed api | testbed worker | testbed healthcheck URL";

/// Set from the SIGTERM/SIGINT handler; polled by the main and worker
/// threads. The process then finishes the requests in flight and exits.
static STOP: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["api"] => run(Role::Api),
        ["worker"] => run(Role::Worker),
        ["healthcheck", url] => match http::healthcheck(url, Duration::from_secs(2)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("testbed healthcheck: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(role: Role) -> ExitCode {
    let cfg = match Config::from_env(role) {
        Ok(cfg) => Arc::new(cfg),
        Err(e) => {
            eprintln!("testbed {}: refusing to start: {e}", role.as_str());
            return ExitCode::from(2);
        }
    };
    let listener = match std::net::TcpListener::bind(("0.0.0.0", cfg.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "testbed {}: cannot listen on port {}: {e}",
                role.as_str(),
                cfg.port
            );
            return ExitCode::FAILURE;
        }
    };
    install_stop_handlers();
    eprintln!(
        "testbed {}: version={} compliance_mode={} port={} redis={} token={} audit_sink={}{}",
        role.as_str(),
        cfg.version,
        cfg.mode.as_str(),
        cfg.port,
        cfg.redis_addr,
        if cfg.token.is_some() {
            "configured"
        } else {
            "none"
        },
        cfg.audit_sink_dir
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
        if cfg.broken {
            " BROKEN=1 (/health will never be ok)"
        } else {
            ""
        },
    );

    let handler_cfg = Arc::clone(&cfg);
    std::thread::spawn(move || {
        http::serve(listener, move |req| service::handle(&handler_cfg, req))
    });
    let worker = (role == Role::Worker).then(|| {
        let cfg = Arc::clone(&cfg);
        std::thread::spawn(move || service::run_worker(&cfg, &STOP))
    });

    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "testbed {}: stop signal received, finishing {} request(s) in flight",
        role.as_str(),
        http::IN_FLIGHT.load(Ordering::SeqCst)
    );
    // A request in flight gets its answer (the container's stop grace
    // period bounds the wait; this bound is for a client that never sends).
    let drain = std::time::Instant::now();
    while http::IN_FLIGHT.load(Ordering::SeqCst) > 0 && drain.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(worker) = worker {
        // The worker finishes the job it holds (if any) before returning.
        let _ = worker.join();
    }
    ExitCode::SUCCESS
}

/// Std has no signal API, but it links libc anyway; `signal(2)` is enough to
/// flip an atomic flag (an async-signal-safe operation) so `docker stop`
/// ends the process promptly instead of waiting for SIGKILL. We run as PID 1
/// in the container, where SIGTERM is ignored unless a handler exists.
fn install_stop_handlers() {
    extern "C" fn on_stop(_signum: std::os::raw::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }
    extern "C" {
        fn signal(
            signum: std::os::raw::c_int,
            handler: extern "C" fn(std::os::raw::c_int),
        ) -> usize;
    }
    const SIGINT: std::os::raw::c_int = 2;
    const SIGTERM: std::os::raw::c_int = 15;
    // SAFETY: `on_stop` only performs an atomic store, which is allowed in a
    // signal handler; the signal numbers are the Linux values.
    unsafe {
        signal(SIGTERM, on_stop);
        signal(SIGINT, on_stop);
    }
}
