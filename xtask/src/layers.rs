//! The rules of the tree, checked on the source: each module uses only the layers below its
//! own; a step never uses another step; only the transport (and the providers that make or are
//! given remote hosts) looks at how a host is reached; only the providers layer (and the settings
//! that record it) branches on the provider's kind.

use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom first; `main.rs` sits on top of all of them.
const LAYERS: [&str; 10] = [
    "progress",
    "state",
    "transport",
    "cluster",
    "providers",
    "resize",
    "results",
    "flags",
    "engine",
    "steps",
];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The source of each file of xtask/src, by its path there ("steps/bench/mod.rs"), tests left
/// out (a test may reach for anything).
fn files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&root, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            let name = p.strip_prefix(&root).unwrap().display().to_string();
            (name, code)
        })
        .filter(|(name, _)| name != "layers.rs")
        .collect()
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == module)
}

/// The top-level modules a source names as `crate::<module>`.
fn crate_uses(code: &str) -> Vec<String> {
    let mut used = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let module: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        used.push(module);
    }
    // `use crate::{a, b}` names several.
    let mut rest = code;
    while let Some(at) = rest.find("crate::{") {
        rest = &rest[at + "crate::{".len()..];
        let group = &rest[..rest.find('}').unwrap_or(0)];
        used.extend(
            group
                .split(',')
                .map(|m| m.trim().split("::").next().unwrap_or_default().to_string()),
        );
    }
    used.retain(|m| !m.is_empty());
    used
}

/// Whether `code` has `field` as a whole name (`.ssh`, not `.ssh_cidr`).
fn names_field(code: &str, field: &str) -> bool {
    code.match_indices(field).any(|(at, _)| {
        !code[at + field.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Whether `code` matches on a provider kind or compares with one.
fn branches_on_kind(code: &str) -> bool {
    code.contains("== ProviderKind::")
        || code.contains("!= ProviderKind::")
        || code.match_indices("ProviderKind::").any(|(at, _)| {
            code[at + "ProviderKind::".len()..]
                .trim_start_matches(|c: char| c.is_ascii_alphanumeric())
                .trim_start()
                .starts_with("=>")
        })
}

fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, code) in files {
        let top = name.split(['/', '.']).next().unwrap_or_default();
        if name == "main.rs" {
            continue;
        }
        let own =
            layer_of(top).unwrap_or_else(|| panic!("{name} is in no layer: add it to LAYERS"));
        for used in crate_uses(code) {
            match layer_of(&used) {
                Some(layer) if layer > own => {
                    found.push(format!("{name} uses crate::{used}, a higher layer"))
                }
                Some(_) => {}
                None => found.push(format!("{name} uses crate::{used}, which is in no layer")),
            }
        }
        // A step is `steps/<step>.rs` or the folder `steps/<step>/`, whose parts reach the
        // step's own `mod.rs` as `super::` and nothing above it.
        let is_step = name.starts_with("steps/") && name != "steps/mod.rs";
        let step_part = is_step && name.matches('/').count() == 2 && !name.ends_with("/mod.rs");
        let outside_own_step = match step_part {
            true => code.contains("super::super"),
            false => code.contains("super::"),
        };
        if is_step && (code.contains("crate::steps") || outside_own_step) {
            found.push(format!("{name} uses another step"));
        }
        let reaches_hosts = name.starts_with("transport/")
            || name.starts_with("providers/aws/")
            || name.starts_with("providers/ssh/")
            || name == "providers/machines.rs"
            || name.starts_with("state/");
        if !reaches_hosts && (names_field(code, ".ssh") || code.contains("SshEndpoint {")) {
            found.push(format!(
                "{name} looks at how a host is reached (only the transport may)"
            ));
        }
        let knows_kinds = name == "providers/mod.rs" || name.starts_with("state/");
        if !knows_kinds && branches_on_kind(code) {
            found.push(format!(
                "{name} branches on the provider's kind (only providers/ may)"
            ));
        }
    }
    found
}

#[test]
fn the_layers_hold() {
    let files = files();
    assert!(files.len() >= 30, "only {} sources found", files.len());
    let found = violations(&files);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The check can fail: each rule finds the breach planted for it.
#[test]
fn each_rule_finds_its_breach() {
    let planted = |name: &str, code: &str| violations(&[(name.to_string(), code.to_string())]);
    assert_eq!(
        planted("state/mod.rs", "use crate::steps::bench;"),
        ["state/mod.rs uses crate::steps, a higher layer"]
    );
    assert_eq!(
        planted("cluster/sql.rs", "use crate::{providers, transport};"),
        ["cluster/sql.rs uses crate::providers, a higher layer"]
    );
    assert_eq!(
        planted("steps/bench.rs", "use super::status;"),
        ["steps/bench.rs uses another step"]
    );
    assert_eq!(
        planted("steps/bench.rs", "if host.ssh.is_some() {}"),
        ["steps/bench.rs looks at how a host is reached (only the transport may)"]
    );
    assert_eq!(
        planted("cluster/server.rs", "match k { ProviderKind::Aws => 1 }"),
        ["cluster/server.rs branches on the provider's kind (only providers/ may)"]
    );
    assert_eq!(
        planted("steps/bench/mod.rs", "use super::status;"),
        ["steps/bench/mod.rs uses another step"]
    );
    assert_eq!(
        planted("steps/bench/load.rs", "use super::super::status;"),
        ["steps/bench/load.rs uses another step"]
    );
    assert!(planted("steps/bench/load.rs", "use super::{Bench, LOADGEN};").is_empty());
    assert!(planted("steps/bench.rs", "use crate::cluster::server;").is_empty());
    assert!(planted("steps/bench.rs", "let c = aws.ssh_cidr;").is_empty());
    assert!(planted("flags.rs", "Settings::defaults(ProviderKind::Aws)").is_empty());
    assert_eq!(planted("flags.rs", "if k == ProviderKind::Aws {}").len(), 1);
}
