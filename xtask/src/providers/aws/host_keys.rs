//! The instances' SSH host keys, read from their console output (cloud-init prints them there
//! at first boot, between `-----BEGIN SSH HOST KEY KEYS-----` and its END line) and pinned in
//! the deployment's known_hosts before the first login: the first connection cannot be
//! intercepted, as it could if the first key seen were trusted.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_sdk_ec2::Client;

use super::explain;
use crate::state::{atomic_write, Session};

const BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
const END: &str = "-----END SSH HOST KEY KEYS-----";
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];
/// How long an instance's console may take to show the keys (EC2 publishes console output a
/// few minutes after boot).
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(900);
const POLL: Duration = Duration::from_secs(10);

/// The `type base64` host keys in a console output; empty when it shows none (yet).
pub fn parse(console: &str) -> Vec<String> {
    let Some(start) = console.find(BEGIN) else {
        return vec![];
    };
    let block = &console[start + BEGIN.len()..];
    let Some(end) = block.find(END) else {
        return vec![];
    };
    block[..end]
        .lines()
        .filter_map(|line| {
            // A console may put a prefix (a timestamp, "ec2: ") before each line.
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| KEY_TYPES.contains(w))?;
            let key = words.get(at + 1)?;
            let base64 = key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
            (base64 && key.len() >= 32).then(|| format!("{} {key}", words[at]))
        })
        .collect()
}

/// Waits for every instance's keys on its console, writes them to known_hosts for its public
/// address and marks its endpoint pinned. An instance already pinned is skipped, so a rerun
/// after an interruption continues.
pub async fn pin(ec2: &Client, session: &mut Session) -> Result<()> {
    let deadline = Instant::now() + CONSOLE_TIMEOUT;
    let resources = session.deployment.aws.clone().unwrap_or_default();
    for index in 0..session.deployment.hosts.len() {
        let host = &session.deployment.hosts[index];
        let Some(ssh) = host.ssh.clone() else {
            continue;
        };
        if ssh.host_keys_pinned {
            continue;
        }
        let instance_id = resources
            .instances
            .get(&host.name)
            .and_then(|i| i.instance_id.clone())
            .with_context(|| format!("{} has no instance recorded", host.name))?;
        let keys = loop {
            let output = ec2
                .get_console_output()
                .instance_id(&instance_id)
                .send()
                .await
                .map_err(|e| explain(&format!("reading the console of {instance_id}"), e))?;
            let text = output
                .output()
                .map(aws_smithy_types::base64::decode)
                .transpose()
                .context("the console output is not base64")?
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            let keys = parse(&text);
            if !keys.is_empty() {
                break keys;
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "the console output of {} ({instance_id}) shows no SSH host keys after {} \
                     minutes (cloud-init prints them at first boot): run provision again to \
                     keep waiting, or provision with --host-keys first-use to trust the first \
                     key a login sees",
                    host.name,
                    CONSOLE_TIMEOUT.as_secs() / 60
                );
            }
            tokio::time::sleep(POLL).await;
        };
        let known = std::fs::read_to_string(&ssh.known_hosts).unwrap_or_default();
        let text = with_keys(&known, &ssh.address, &keys);
        atomic_write(&ssh.known_hosts, text.as_bytes(), 0o600)?;
        if let Some(ssh) = session.deployment.hosts[index].ssh.as_mut() {
            ssh.host_keys_pinned = true;
        }
        session.save()?;
    }
    Ok(())
}

/// known_hosts with `address`'s lines replaced by `keys`.
fn with_keys(known: &str, address: &str, keys: &[String]) -> String {
    let mut text: String = known
        .lines()
        .filter(|line| line.split_whitespace().next() != Some(address))
        .map(|line| format!("{line}\n"))
        .collect();
    for key in keys {
        text.push_str(&format!("{address} {key}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIHhC6Pn7u0nO4n9bEtU6mF9Ck8Q9l4Ojc4x7w1WQnq5b";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBF6o1c2lY0Yp";

    #[test]
    fn keys_are_read_from_the_block_only() {
        let console = format!(
            "[   12.3] cloud-init[601]: ssh-ed25519 {ECDSA} not-in-the-block\n\
             ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n\
             ec2: 256 SHA256:abc root@ip-172-31-1-2 (ED25519)\n\
             ec2: -----END SSH HOST KEY FINGERPRINTS-----\n\
             {BEGIN}\n\
             ecdsa-sha2-nistp256 {ECDSA} root@ip-172-31-1-2\n\
             ec2: ssh-ed25519 {ED25519} root@ip-172-31-1-2\n\
             ssh-ed25519 not;base64\n\
             {END}\n\
             ssh-rsa {ED25519} after-the-block\n"
        );
        assert_eq!(
            parse(&console),
            [
                format!("ecdsa-sha2-nistp256 {ECDSA}"),
                format!("ssh-ed25519 {ED25519}")
            ]
        );
        assert!(parse("Linux version 6.8 ... no keys yet").is_empty());
        assert!(parse(&format!("{BEGIN}\nssh-ed25519 {ED25519}\n")).is_empty());
    }

    #[test]
    fn an_address_gets_exactly_its_new_keys() {
        let known = format!("203.0.113.7 ssh-ed25519 OLD\n198.51.100.2 ssh-ed25519 {ED25519}\n");
        let keys = [format!("ssh-ed25519 {ED25519}")];
        assert_eq!(
            with_keys(&known, "203.0.113.7", &keys),
            format!("198.51.100.2 ssh-ed25519 {ED25519}\n203.0.113.7 ssh-ed25519 {ED25519}\n")
        );
    }
}
