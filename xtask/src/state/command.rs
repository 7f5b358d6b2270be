//! The commands the tool tells its user to run, spelled so that they work as printed: with
//! `--data` when this run's state file is not the default one (a command without it would act
//! on another deployment).

use std::sync::OnceLock;

use super::{project_root, Paths};

/// ` --data <path>` for a state file other than the default, else nothing; set once per run.
static DATA_FLAG: OnceLock<String> = OnceLock::new();

/// Records which state file this run works on; `main` calls it before anything prints.
pub fn remember(paths: &Paths) {
    DATA_FLAG.get_or_init(|| data_flag(paths));
}

fn data_flag(paths: &Paths) -> String {
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if absolute(&paths.data_json) == absolute(&project_root().join("data.json")) {
        return String::new();
    }
    format!(" --data {}", quoted(&paths.data_json.display().to_string()))
}

/// A word as a shell reads it back: quoted only when it must be.
fn quoted(word: &str) -> String {
    let plain = word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%=,".contains(&b));
    match plain {
        true => word.to_string(),
        false => format!("'{}'", word.replace('\'', r"'\''")),
    }
}

/// `cargo xtask <args>` as the user must type it for this run's deployment.
pub fn command(args: &str) -> String {
    let flag = DATA_FLAG.get().map_or("", String::as_str);
    match args.is_empty() {
        true => format!("cargo xtask{flag}"),
        false => format!("cargo xtask{flag} {args}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_state_file_is_named_in_every_command() {
        let default = Paths::new(project_root().join("data.json"));
        assert_eq!(data_flag(&default), "");
        let other = Paths::new("/srv/lab/data.json".into());
        assert_eq!(data_flag(&other), " --data /srv/lab/data.json");
        let spaced = Paths::new("/srv/my lab/it's.json".into());
        assert_eq!(data_flag(&spaced), r" --data '/srv/my lab/it'\''s.json'");
        // This test process never remembered a state file: the default's commands.
        assert_eq!(command("repair"), "cargo xtask repair");
        assert_eq!(command(""), "cargo xtask");
    }
}
