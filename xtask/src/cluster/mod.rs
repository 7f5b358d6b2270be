//! The cluster layer: what runs on the hosts and how to drive it, the same on every provider
//! because it goes through the transport: SQL on a server, the servers and their replication,
//! the dataset, who replicates from whom, a Galera cluster's start, the role services and the
//! relays of their floor, the processes they are and the cgroups that limit them, the packages
//! and builds they need.

pub mod build;
pub mod dataset;
pub mod drift;
pub mod floor;
pub mod galera;
pub mod limits;
pub mod packages;
pub mod process;
pub mod server;
pub mod services;
pub mod sql;
pub mod topology;
