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

#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// The header that carries a request's id from the gatekeeper through every hop.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

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
