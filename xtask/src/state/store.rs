//! Reading and writing data.json: atomic writes, and the format versions this xtask reads.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::Deployment;

/// Bumped whenever the document changes shape; older versions are read and upgraded, newer
/// ones refused.
pub const FORMAT_VERSION: u32 = 2;

/// Where a deployment's files are: data.json, its lock, and the folder of per-host state.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_json: PathBuf,
}

impl Paths {
    pub fn new(data_json: PathBuf) -> Paths {
        Paths { data_json }
    }

    pub fn dir(&self) -> &Path {
        self.data_json.parent().unwrap_or(Path::new("."))
    }

    pub fn lock_file(&self) -> PathBuf {
        sibling(&self.data_json, ".lock")
    }

    /// Per-host folders of the local provider, and what this machine keeps of remote hosts.
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join(".state")
    }

    pub fn load(&self) -> Result<Option<Deployment>> {
        let text = match fs::read_to_string(&self.data_json) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", self.data_json.display()))
            }
        };
        parse(&text)
            .map(Some)
            .with_context(|| format!("{} was left untouched", self.data_json.display()))
    }

    /// Atomically replaces data.json (owner-only: it holds the secrets).
    pub fn save(&self, deployment: &Deployment) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(deployment).context("serializing data.json")?;
        json.push(b'\n');
        atomic_write(&self.data_json, &json, 0o600)
    }
}

/// Replaces a file so that a crash at any point leaves the old or the new one, never half:
/// written beside, synced, renamed over, and the folder synced.
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = sibling(path, ".tmp");
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Parses data.json, telling a corrupt file from one written by another format version, and
/// upgrading the versions before this one.
pub fn parse(text: &str) -> Result<Deployment> {
    let mut value: Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "data.json is not valid JSON ({e}); fix or move the file away, then run the step again"
        )
    })?;
    match value.get("format_version").and_then(|v| v.as_u64()) {
        Some(1) => upgrade_from_1(&mut value)?,
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => bail!(
            "data.json has format version {v}, this xtask reads versions up to {FORMAT_VERSION}; \
             use the newer xtask that wrote it"
        ),
        None => bail!("data.json has no format_version: it was not written by this xtask"),
    }
    serde_json::from_value(value).map_err(|e| {
        anyhow::anyhow!("data.json does not match the expected layout ({e}); fix or move it away")
    })
}

/// Version 1 recorded the provider twice (`provider`, and `settings.aws` present or not) and
/// the local provider's prefix among the shared settings; version 2 keeps the provider's kind
/// and its own settings together in `settings.provider`.
fn upgrade_from_1(value: &mut Value) -> Result<()> {
    let object = value
        .as_object_mut()
        .context("data.json (version 1) is not an object")?;
    let kind = object
        .remove("provider")
        .context("data.json (version 1) has no provider")?;
    let settings = object
        .get_mut("settings")
        .and_then(Value::as_object_mut)
        .context("data.json (version 1) has no settings")?;
    let prefix = settings.remove("loopback_prefix");
    let aws = settings.remove("aws");
    if let Some(scale) = settings.remove("dataset_scale") {
        settings.insert("scale".into(), scale);
    }
    let provider = match kind.as_str() {
        Some("local") => json!({ "kind": "local", "loopback_prefix": prefix }),
        Some("aws") => {
            let mut aws = aws.context("data.json (version 1) of aws has no aws settings")?;
            let aws_object = aws
                .as_object_mut()
                .context("aws settings are not an object")?;
            if let Some(endpoint) = aws_object.remove("endpoint") {
                aws_object.insert("aws_endpoint".into(), endpoint);
            }
            aws_object.insert("kind".into(), json!("aws"));
            aws
        }
        _ => bail!("data.json (version 1) has an unknown provider {kind}"),
    };
    settings.insert("provider".into(), provider);
    object.insert("format_version".into(), json!(FORMAT_VERSION));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ProviderKind, ProviderSettings, Secrets, Settings};

    fn sample() -> Deployment {
        Deployment::new(
            "dbc-test".into(),
            Settings::defaults(ProviderKind::Local),
            vec![],
        )
    }

    #[test]
    fn round_trips_through_json() {
        let d = sample();
        let text = serde_json::to_string(&d).unwrap();
        let back = parse(&text).unwrap();
        assert_eq!(back.id, d.id);
        assert_eq!(back.secrets, d.secrets);
        assert_eq!(back.settings, d.settings);
    }

    #[test]
    fn rejects_corrupt_and_foreign_files() {
        let err = parse("{ not json").unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
        let err = parse(r#"{"format_version": 99}"#).unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
        let err = parse(r#"{"hello": 1}"#).unwrap_err().to_string();
        assert!(err.contains("no format_version"), "{err}");
        let err = parse(r#"{"format_version": 2}"#).unwrap_err().to_string();
        assert!(err.contains("expected layout"), "{err}");
    }

    /// Files of version 1, as the previous xtask wrote them, are read and upgraded.
    #[test]
    fn reads_version_1() {
        let secrets = serde_json::to_value(Secrets::generate()).unwrap();
        let v1 = |provider: &str, extra: Value| {
            let mut settings = json!({
                "workers": 2, "loopback_prefix": "127.0.9", "db_port": 3307,
                "service_port": 8081, "dataset_scale": 4
            });
            settings
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({
                "format_version": 1, "id": "dbc-old", "provider": provider,
                "created_at": "2026-11-01T00:00:00Z", "torn_down_at": null,
                "settings": settings, "hosts": [], "processes": {}, "steps": {},
                "secrets": secrets, "bench": null
            })
            .to_string()
        };
        let local = parse(&v1("local", json!({}))).unwrap();
        assert_eq!(local.format_version, FORMAT_VERSION);
        assert_eq!(local.provider(), ProviderKind::Local);
        assert_eq!((local.settings.workers, local.settings.scale), (2, 4));
        assert_eq!(
            local.settings.provider,
            ProviderSettings::Local(crate::state::LocalSettings {
                loopback_prefix: "127.0.9".into(),
                // Deployments from before the limits ran unlimited, and still do.
                host_cpus: super::super::limits::HostCpus::Unlimited,
                host_memory: crate::state::HostMemory { mib: None },
            })
        );
        let aws = parse(&v1(
            "aws",
            json!({ "target": "x86_64-unknown-linux-gnu", "aws": {
                "region": "eu-west-1", "endpoint": "http://127.0.0.1:5000", "ami": null,
                "db_instance_type": "t3.micro", "service_instance_type": "t3.large",
                "ssh_cidr": "203.0.113.7/32", "http_cidr": "0.0.0.0/0"
            }}),
        ))
        .unwrap();
        let settings = aws.settings.aws().unwrap();
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            settings.aws_endpoint.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(settings.db_instance_type, "t3.micro");
        assert_eq!(
            aws.settings.target.as_deref(),
            Some("x86_64-unknown-linux-gnu")
        );
        let err = parse(&v1("gcp", json!({}))).unwrap_err().to_string();
        assert!(err.contains("unknown provider"), "{err}");
    }

    #[test]
    fn save_is_private_and_load_reads_it_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let paths = Paths::new(dir.join("data.json"));
        assert!(paths.load().unwrap().is_none());
        paths.save(&sample()).unwrap();
        let mode = fs::metadata(&paths.data_json).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(paths.load().unwrap().unwrap().id, "dbc-test");
        assert!(!sibling(&paths.data_json, ".tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
