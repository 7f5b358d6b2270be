//! The lock that gives one run the right to change a deployment, and the session that holds it.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context, Result};

use super::{Deployment, Paths};

/// A locked deployment: the only way to change data.json.
pub struct Session {
    pub paths: Paths,
    pub deployment: Deployment,
    _lock: Lock,
}

impl Session {
    pub fn new(paths: &Paths, lock: Lock, deployment: Deployment) -> Session {
        Session {
            paths: paths.clone(),
            deployment,
            _lock: lock,
        }
    }

    /// Opens the current deployment for a step other than provision.
    pub fn open_live(paths: &Paths, lock: Lock) -> Result<Session> {
        let deployment = match paths.load()? {
            Some(d) if d.is_live() => d,
            Some(d) => bail!(
                "deployment {} was torn down at {}; run `{}` to create a new one",
                d.id,
                d.torn_down_at.unwrap_or_default(),
                super::command("provision")
            ),
            None => bail!(
                "no deployment at {}; run `{}` first",
                paths.data_json.display(),
                super::command("provision")
            ),
        };
        Ok(Session::new(paths, lock, deployment))
    }

    pub fn save(&self) -> Result<()> {
        self.paths.save(&self.deployment)
    }
}

/// Exclusive right to change a deployment, held until dropped. The lock file says who holds it.
pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn acquire(paths: &Paths) -> Result<Lock> {
        let path = paths.lock_file();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another run"
                } else {
                    holder
                };
                bail!(
                    "another xtask run holds the deployment lock {} ({holder}); \
                     wait for it to finish or stop it",
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        let command: Vec<String> = std::env::args().collect();
        let mut mark = || -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "pid {}: {}", std::process::id(), command.join(" "))
        };
        mark().with_context(|| format!("writing {}", path.display()))?;
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("xtask-lock-{}", std::process::id()));
        let paths = Paths::new(dir.join("data.json"));
        let held = Lock::acquire(&paths).unwrap();
        let err = Lock::acquire(&paths).err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        Lock::acquire(&paths).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
