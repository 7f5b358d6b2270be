//! The contracts between the crates of the workspace, typed once and used by both sides:
//!
//! - `wire`: the query request, its result and the error body, the same JSON at every hop;
//! - `config`: each service's config file, written by `cargo xtask deploy-services`;
//! - `report`: the load generator's report, read back by `cargo xtask fetch-results`;
//! - `gtid`: MariaDB GTID positions and how they compare;
//! - `galera`: the cluster engines, and which Galera node may serve and which one writes;
//! - `failover`: when the proxy fails over by itself, whom it promotes, and the statements.

pub mod config;
pub mod failover;
pub mod galera;
pub mod gtid;
pub mod report;
pub mod wire;

/// Implements `as_str` (the one spelling of each variant), `Display`, `FromStr`, and serde as
/// that same string, for a unit enum.
macro_rules! named_enum {
    ($t:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($t::$variant => $name),* }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $t {
            type Err = String;

            fn from_str(text: &str) -> Result<$t, String> {
                $t::ALL.iter().copied().find(|v| v.as_str() == text).ok_or_else(|| {
                    let names: Vec<&str> = $t::ALL.iter().map(|v| v.as_str()).collect();
                    format!("unknown {} {text:?}; one of: {}", stringify!($t).to_lowercase(), names.join(", "))
                })
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    use crate::report::Workload;
    use crate::wire::Mode;

    #[test]
    fn names_are_one_spelling_everywhere() {
        for mode in Mode::ALL {
            let json = serde_json::to_value(mode).unwrap();
            assert_eq!(json, mode.as_str());
            assert_eq!(serde_json::from_value::<Mode>(json).unwrap(), *mode);
            assert_eq!(mode.to_string().parse::<Mode>().unwrap(), *mode);
        }
        assert_eq!(Mode::DirectHit.as_str(), "direct-hit");
        let err = "fast".parse::<Workload>().unwrap_err();
        assert!(err.contains("one of: point, range, mix, write"), "{err}");
        assert!(serde_json::from_str::<Mode>("\"sideways\"").is_err());
    }
}
