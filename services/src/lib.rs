//! The role services of the Gatekeeper and Proxy patterns: the gatekeeper (public), the trusted
//! host (validation) and the proxy (routing to the cluster), and what they share.

pub mod error;
pub mod trusted_host;
pub mod wire;
