//! The role services of the Gatekeeper and Proxy patterns: the gatekeeper (public), the trusted
//! host (validation) and the proxy (routing to the cluster), and what they share.
//!
//! Request path: client -> gatekeeper -> trusted host -> proxy -> manager or a worker.

pub mod config;
pub mod error;
pub mod extract;
pub mod gatekeeper;
pub mod guard;
pub mod loadgen;
pub mod proxy;
pub mod relay;
pub mod serve;
pub mod trusted_host;
pub mod upstream;

/// Every program of the package allocates through mimalloc: a request is many small
/// allocations (the parser's tree, JSON, HTTP headers), which glibc's allocator serves slower
/// and musl's much slower. The floor's relays have it too, so the floor stays the same
/// plumbing as the chain's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
