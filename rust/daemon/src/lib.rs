//! `balena-engined`: the balena engine's daemon, serving the Docker Engine API on a unix socket.
//!
//! - [`server`]: start-up (store, pidfile, sockets), serving, graceful shutdown
//! - [`api`]: the HTTP API, one module per part (`system`, `images`, `events`; containers and volumes next)
//! - [`state`]: what handlers share (the store, the event bus, the other parts' [`backends`])
//! - [`events`]: the event bus behind `/events`
//! - [`listeners`], [`hosts`], [`activation`]: `-H` addresses, unix/TCP binding, systemd socket activation
//! - [`notify`]: systemd's notify protocol; [`watchdog`]: feeding systemd's watchdog while healthy
//! - [`pidfile`], [`logging`], [`config`]: the usual daemon chores
//! - [`sysinfo`], [`timefmt`], [`human`]: host facts, API times and sizes
//! - [`cgroups`]: what the host's cgroups lack for containers' limits (start-up warnings, `/info`)

#![recursion_limit = "256"]

pub mod activation;
pub mod api;
pub mod backends;
pub mod cgroups;
pub mod config;
pub mod containers;
pub mod events;
pub mod hosts;
pub mod human;
pub mod listeners;
pub mod logging;
pub mod logs;
pub mod notify;
pub mod pidfile;
pub mod restart;
pub mod server;
pub mod state;
pub mod sysinfo;
pub mod volumes;
pub mod watchdog;
