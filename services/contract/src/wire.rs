//! What the services send each other and the outside world: the query request, its result, and
//! the error body, the same JSON at every hop.

use serde::{Deserialize, Serialize};

/// How a query is routed: the three read strategies, or a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Read from the manager.
    DirectHit,
    /// Read from a random healthy worker.
    Random,
    /// Read from the healthy worker with the lowest measured response time.
    Customized,
    /// Write on the manager.
    Write,
}

crate::named_enum!(Mode {
    DirectHit = "direct-hit",
    Random = "random",
    Customized = "customized",
    Write = "write",
});

impl Mode {
    pub fn is_read(self) -> bool {
        self != Mode::Write
    }
}

/// The API's request. The gatekeeper passes it on as the bytes it came in, once they decode as
/// this: a field it does not know is refused there, not carried to the hops behind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub query: String,
    pub mode: Mode,
    /// Read-your-writes: a read is served only where this GTID position (a write's
    /// `last_gtid`) has been applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_gtid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResponse {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Rows changed by a write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_rows: Option<u64>,
    /// The host that ran the query ("manager", "worker-2").
    pub served_by: String,
    pub elapsed_ms: f64,
    /// Set when a read could not go where its strategy wanted, or the result was cut, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The result holds only the first rows: the whole was over the proxy's row or size cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// A write's transaction, as a GTID: a later read with it as `after_gtid` sees the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_gtid: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// The request's id, which every service's log carries with the details a public answer
    /// leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// When the same request may be tried again (a refusal for a budget spent): every hop
    /// relays the body, and the gatekeeper answers the public with a `Retry-After` of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// The header that carries a request's id from the gatekeeper through every hop.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The header that names the client a request came from, as the gatekeeper saw it, through
/// every hop: the proxy charges the client's database time to it. Only the gatekeeper sets it
/// (the hops behind accept requests from the one before only).
pub const CLIENT_HEADER: &str = "x-client";

/// Who sent a request, as the gatekeeper tells the hops behind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// A public client, by its address.
    Public(std::net::IpAddr),
    /// The deployment's own bench client: no budget, as no rate limit.
    Exempt(std::net::IpAddr),
    /// A request that came with no client named (not through the gatekeeper): one client.
    Unnamed,
}

impl Client {
    pub fn header_value(&self) -> String {
        match self {
            Client::Public(address) => address.to_string(),
            Client::Exempt(address) => format!("exempt {address}"),
            Client::Unnamed => "unnamed".to_string(),
        }
    }

    /// Reads the header's value; anything unreadable is the unnamed client.
    pub fn from_header(value: Option<&str>) -> Client {
        let Some(value) = value else {
            return Client::Unnamed;
        };
        match value.strip_prefix("exempt ") {
            Some(address) => address.parse().map_or(Client::Unnamed, Client::Exempt),
            None => value.parse().map_or(Client::Unnamed, Client::Public),
        }
    }

    pub fn is_exempt(&self) -> bool {
        matches!(self, Client::Exempt(_))
    }
}

/// A literal of a checked query, taken out of its text by the trusted host and bound by the
/// proxy as a parameter of the prepared template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "kebab-case")]
pub enum Param {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    /// An exact decimal, as its digits; the template casts it to its DECIMAL type.
    Decimal(String),
    Text(String),
}

/// What the trusted host forwards to the proxy: the checked query as a template with `?` for
/// its literals, their values, and the digest of its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardedQuery {
    pub mode: Mode,
    pub template: String,
    pub params: Vec<Param>,
    /// Names the shape (`digest_text`) in the proxy's statistics.
    pub digest: String,
    /// The query with every literal as `?` and IN lists collapsed.
    pub digest_text: String,
    /// Read-your-writes: the position the serving backend must have applied (checked to be a
    /// GTID position by the trusted host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_gtid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_travels_as_its_header() {
        let address = "203.0.113.7".parse().unwrap();
        for client in [
            Client::Public(address),
            Client::Exempt(address),
            Client::Unnamed,
        ] {
            let value = client.header_value();
            assert_eq!(Client::from_header(Some(&value)), client, "{value}");
        }
        assert_eq!(Client::from_header(None), Client::Unnamed);
        assert_eq!(Client::from_header(Some("exempt nobody")), Client::Unnamed);
    }
}
