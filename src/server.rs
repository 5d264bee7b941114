//! The server: the runtime's cores plus the services beside them, started in order.
//!
//! Why a module of its own: the runtime moves SIP datagrams and knows nothing of the
//! management API, and the management API only talks to the cores through their
//! command channels. Something has to start both and hand the one what it needs from
//! the other; doing it here keeps `runtime` free of any `admin` import (issue 18:
//! no import circles).
//!
//! ```text
//!   runtime::start(config)  signals, sockets, mesh, command channels (nothing serves)
//!   admin::spawn(...)       /healthz answers from here on (store not loaded yet)
//!   Starting::serve()       store, cores, "ready", supervise until SIGTERM/SIGINT
//!   join the admin thread   (serve requested the stop it waits for)
//! ```

use crate::admin;
use crate::config::Config;
use crate::runtime;

/// Run the server until SIGTERM/SIGINT; then stop receiving, answer what is in
/// flight, and return. Fails before serving if any socket, executor or the management
/// API cannot start.
pub fn run(config: Config) -> anyhow::Result<()> {
    let starting = runtime::start(config)?;
    let admin_thread = admin::spawn(
        starting.config().admin,
        starting.control().clone(),
        starting.local_addrs(),
        starting.config().redis.as_ref(),
        starting.config().registrar.max_expires_s,
    )?;
    let result = starting.serve();
    if let Some(admin) = admin_thread {
        let _ = admin.join();
    }
    result
}
