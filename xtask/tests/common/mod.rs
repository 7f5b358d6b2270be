//! Shared by the end-to-end tests: a deployment in a folder and loopback range of its own,
//! driven through the real xtask binary, torn down by a guard even when a test fails.

#![allow(dead_code)] // each test file uses its own part of this module

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod fleet;
pub mod load;
pub mod moto;
pub mod sshd;

pub struct Deployment {
    pub dir: PathBuf,
    pub prefix: &'static str,
    /// Runs xtask as another OS user (`setpriv` arguments), for the no-root case.
    pub as_user: Vec<String>,
    /// Extra environment of every xtask run (the AWS tests' credentials and endpoint).
    pub env: Vec<(String, String)>,
}

impl Deployment {
    pub fn new(name: &str, prefix: &'static str) -> Deployment {
        let dir = std::env::temp_dir().join(format!("xtask-it-{name}-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        fs::create_dir_all(&dir).unwrap();
        Deployment {
            dir,
            prefix,
            as_user: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn data_json(&self) -> PathBuf {
        self.dir.join("data.json")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let xtask = env!("CARGO_BIN_EXE_xtask");
        let mut cmd = if self.as_user.is_empty() {
            Command::new(xtask)
        } else {
            let mut c = Command::new("setpriv");
            c.args(&self.as_user).arg("--").arg(xtask);
            c
        };
        cmd.arg("--data").arg(self.data_json()).args(args);
        cmd.env_remove("XTASK_DATA");
        // Results of a test stay in its folder, never in the repository's results/.
        cmd.env("XTASK_RESULTS", self.dir.join("results"));
        // The AWS SDK must never look for credentials at the instance metadata address.
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs xtask and asserts it succeeded; returns stdout and stderr together.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = text(&out);
        assert!(out.status.success(), "xtask {args:?} failed:\n{text}");
        self.assert_commands_work_as_printed(&text);
        text
    }

    /// `cargo xtask <args>` as xtask prints it for this deployment.
    pub fn xtask(&self, args: &str) -> String {
        format!("cargo xtask --data {} {args}", self.data_json().display())
    }

    /// Every command xtask tells the user to run names this deployment's state file (every
    /// test's is not the default): run as printed, it acts on this deployment.
    pub fn assert_commands_work_as_printed(&self, text: &str) {
        let with_data = format!("cargo xtask --data {} ", self.data_json().display());
        for (at, _) in text.match_indices("cargo xtask") {
            assert!(
                text[at..].starts_with(&with_data),
                "a command printed without this deployment's --data: {:?} in:\n{text}",
                text[at..].lines().next().unwrap_or_default()
            );
        }
    }

    /// Runs xtask and asserts it failed with a message containing `expected`.
    pub fn fails(&self, args: &[&str], expected: &str) -> String {
        let out = self.run(args);
        let text = text(&out);
        assert!(
            !out.status.success(),
            "xtask {args:?} should have failed:\n{text}"
        );
        assert!(
            text.contains(expected),
            "xtask {args:?}: expected {expected:?} in:\n{text}"
        );
        assert!(
            !text.contains("panicked"),
            "xtask {args:?} panicked:\n{text}"
        );
        self.assert_commands_work_as_printed(&text);
        text
    }

    pub fn state(&self) -> Value {
        let text = fs::read_to_string(self.data_json()).unwrap();
        serde_json::from_str(&text).expect("data.json must always parse")
    }

    pub fn provision(&self, extra: &[&str]) -> String {
        let mut args = vec![
            "provision",
            "--loopback-prefix",
            self.prefix,
            "--scale",
            "1",
        ];
        args.extend(extra);
        self.ok(&args)
    }

    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join(".state").join(host)
    }

    pub fn address(&self, host: &str) -> String {
        let state = self.state();
        let hosts = state["hosts"].as_array().unwrap();
        let h = hosts.iter().find(|h| h["name"] == host).unwrap();
        h["address"].as_str().unwrap().to_string()
    }

    /// Root query over the host's socket: the rows, tab-separated.
    pub fn root_sql(&self, host: &str, sql: &str) -> String {
        self.root_client(host, sql, &["--skip-column-names"])
    }

    /// Root query in filmdb over the host's socket: the column names, then the rows.
    pub fn root_sql_with_names(&self, host: &str, sql: &str) -> String {
        self.root_client(host, sql, &["--column-names", "--database=filmdb"])
    }

    /// The root client command for a query over the host's socket, to run in the background.
    pub fn root_sql_command(&self, host: &str, sql: &str) -> Command {
        let socket = self.host_dir(host).join("mariadbd.sock");
        let mut cmd = Command::new("mariadb");
        cmd.args(["--no-defaults", "--user=root", "--batch"])
            .arg(format!("--socket={}", socket.display()))
            .args(["-e", sql]);
        cmd
    }

    fn root_client(&self, host: &str, sql: &str, options: &[&str]) -> String {
        let out = self
            .root_sql_command(host, sql)
            .args(options)
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql} on {host}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Query over TCP as one of the deployment's accounts, the way a client on the network does.
    pub fn tcp_sql(&self, host: &str, user: &str, password: &str, sql: &str) -> Output {
        Command::new("mariadb")
            .args([
                "--no-defaults",
                "--batch",
                "--skip-column-names",
                "--protocol=TCP",
            ])
            .arg(format!("--host={}", self.address(host)))
            .arg(format!("--user={user}"))
            .env("MYSQL_PWD", password)
            .args(["-e", sql])
            .output()
            .unwrap()
    }

    /// Starts a host's server by hand on its own config, as an operator or a reboot would:
    /// detached (setsid -f: it leaves the test's session, which does not wait for it).
    pub fn start_server_by_hand(&self, host: &str) {
        let config = self.host_dir(host).join("my.cnf");
        let path = format!(
            "{}:/usr/sbin:/sbin",
            std::env::var("PATH").unwrap_or_default()
        );
        let started = Command::new("setsid")
            .env("PATH", path)
            .arg("-f")
            .arg("mariadbd")
            .arg(format!("--defaults-file={}", config.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(started.success());
    }

    /// Inserts an actor on the manager through the app account: a write the workers replicate.
    pub fn insert_actor(&self, actor_id: u32, first_name: &str, last_name: &str) {
        let quote = |s: &str| s.replace('\'', "''");
        let write = format!(
            "INSERT INTO filmdb.actor (actor_id, first_name, last_name) VALUES ({actor_id}, '{}', '{}')",
            quote(first_name),
            quote(last_name)
        );
        let out = self.tcp_sql("manager", "app", &self.secret("app_password"), &write);
        assert!(out.status.success(), "{}", text(&out));
    }

    /// Waits until `host` holds the actor that insert_actor wrote.
    pub fn wait_for_actor(&self, host: &str, actor_id: u32, last_name: &str) {
        let select = format!("SELECT last_name FROM filmdb.actor WHERE actor_id = {actor_id}");
        wait_for("the write to replicate", Duration::from_secs(30), || {
            self.root_sql(host, &select).trim() == last_name
        });
    }

    /// Live (non-zombie) mariadbd processes started with one of this deployment's configs.
    /// SIGKILLs the host's database server (as data.json records it) and waits until it is
    /// gone.
    pub fn kill_server(&self, host: &str) {
        let pid = self.state()["processes"][format!("{host}/mariadbd")]["pid"]
            .as_u64()
            .unwrap();
        let killed = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        wait_for(
            "the killed server to be gone",
            Duration::from_secs(10),
            || !self.servers().iter().any(|(h, _)| h == host),
        );
    }

    /// Starts xtask in the background with its output discarded (to be killed midway).
    pub fn spawn_quiet(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn servers(&self) -> Vec<(String, u32)> {
        let state_dir = self.dir.join(".state");
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let Some(config) = cmdline.strip_prefix("mariadbd --defaults-file=") else {
                continue;
            };
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            let config = Path::new(config.trim());
            if !zombie && config.starts_with(&state_dir) {
                let host = config.parent().unwrap().file_name().unwrap();
                found.push((host.to_string_lossy().into_owned(), pid));
            }
        }
        found.sort();
        found
    }

    /// The cgroup folders of the deployment's hosts that exist on this machine, in every
    /// hierarchy (`.../dbcluster/<id>/<host>`), sorted.
    pub fn cgroups_on_machine(&self) -> Vec<PathBuf> {
        let id = self.state()["id"].as_str().unwrap().to_string();
        let mut found = Vec::new();
        for hierarchy in ["", "cpu", "cpuacct", "memory"] {
            let dir = Path::new("/sys/fs/cgroup")
                .join(hierarchy)
                .join("dbcluster")
                .join(&id);
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.path().is_dir() {
                    found.push(entry.path());
                }
            }
        }
        found.sort();
        found
    }

    /// A host's cgroup folders, as data.json records them.
    pub fn cgroups_of(&self, host: &str) -> Vec<PathBuf> {
        let state = self.state();
        let groups = state["limits"]["hosts"][host]["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("{host} has no cgroup in data.json: {}", state["limits"]));
        groups
            .iter()
            .map(|g| PathBuf::from(g.as_str().unwrap()))
            .collect()
    }

    /// CPU seconds a host's group has used, from its accounting.
    pub fn cgroup_cpu_seconds(&self, host: &str) -> f64 {
        for group in self.cgroups_of(host) {
            if let Ok(ns) = fs::read_to_string(group.join("cpuacct.usage")) {
                return ns.trim().parse::<f64>().unwrap() / 1e9;
            }
            if let Ok(stat) = fs::read_to_string(group.join("cpu.stat")) {
                if let Some(us) = stat.lines().find_map(|l| l.strip_prefix("usage_usec ")) {
                    return us.trim().parse::<f64>().unwrap() / 1e6;
                }
            }
        }
        panic!("no CPU accounting for {host}")
    }

    /// Live service processes of this deployment, by host.
    pub fn services(&self) -> Vec<(String, u32)> {
        let state_dir = self.dir.join(".state");
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            if !zombie && args.len() >= 3 && args[1] == "--config" {
                let config = Path::new(&args[2]);
                if config.starts_with(&state_dir) {
                    let host = config.parent().unwrap().file_name().unwrap();
                    found.push((host.to_string_lossy().into_owned(), pid));
                }
            }
        }
        found.sort();
        found
    }

    /// `ip:port` of a role service.
    pub fn service(&self, host: &str) -> String {
        format!("{}:8080", self.address(host))
    }

    /// A query through the gatekeeper's JSON API.
    pub fn api(&self, query: &str, mode: &str) -> (u16, Value) {
        self.api_request(serde_json::json!({ "query": query, "mode": mode }))
    }

    /// Sends a request body of the public API as it is.
    pub fn api_request(&self, request: Value) -> (u16, Value) {
        let body = request.to_string();
        let r = http(
            None,
            &self.service("gatekeeper"),
            "POST",
            "/api/query",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let json = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
        (r.status, json)
    }

    pub fn secret(&self, name: &str) -> String {
        self.state()["secrets"][name].as_str().unwrap().to_string()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Whatever the test did, leave no server behind.
        if self.data_json().exists() {
            self.as_user.clear();
            let _ = self.run(&["teardown"]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether a process is in a group folder (its `cgroup.procs` lists it).
pub fn in_cgroup(pid: u32, group: &Path) -> bool {
    fs::read_to_string(group.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .any(|p| p == pid.to_string())
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct HttpResponse {
    pub status: u16,
    /// Each header line's name and value, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// One HTTP/1.1 request, optionally from a chosen source address (to test allowlists).
pub fn http(
    source: Option<&str>,
    target: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    use socket2::{Domain, Socket, Type};
    let target: SocketAddr = target.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    if let Some(source) = source {
        let ip: IpAddr = source.parse().unwrap();
        socket.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    }
    socket
        .connect_timeout(&target.into(), Duration::from_secs(5))
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    parse_response(&read_response(&mut stream))
}

/// Reads one response: up to its Content-Length when it has one (some servers keep the
/// connection open whatever the request said), else to the end of the stream.
pub fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length {
                if raw.len() >= end + 4 + length {
                    return raw;
                }
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}
