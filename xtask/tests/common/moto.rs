//! The moto EC2 emulator (PyPI `moto[server]`) on 127.0.0.1, and a boto3 client to check what
//! the xtask created there. Only moto's own endpoint is ever contacted: the addresses it hands
//! out to instances are never connected to.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::spawn(&[])
    }

    /// Freezes the emulator (SIGSTOP): every API call in flight waits until `resume`.
    pub fn freeze(&self) {
        signal(self.child.id(), libc::SIGSTOP);
    }

    pub fn resume(&self) {
        signal(self.child.id(), libc::SIGCONT);
    }

    /// A moto that checks every request's credentials against its own (empty) IAM, as AWS
    /// does: the test credentials are refused with `AuthFailure`, like expired ones.
    pub fn start_checking_credentials() -> Moto {
        Moto::spawn(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")])
    }

    fn spawn(env: &[(&str, &str)]) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto: install it with `pip install 'moto[server]'`");
        let mut moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto exited ({status}); is `moto[server]` installed? (pip install 'moto[server]')");
            }
            assert!(Instant::now() < deadline, "moto did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The environment an xtask run against this moto gets: fake credentials, and no
    /// instance metadata lookup (which would go to 169.254.169.254).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/xtask-test"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/xtask-test"),
            // The SDK's own endpoint setting, so that a run that lacks --aws-endpoint still
            // talks to moto and never to AWS.
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Everything moto holds with the deployment's tag: instances (with state, type, key,
    /// groups and tags), security groups with their rules, and the key pairs by name.
    pub fn resources(&self, deployment: &str) -> Value {
        let out = Command::new("python3")
            .args(["-c", DESCRIBE, &self.endpoint, deployment])
            .envs(self.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "describing moto's resources failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

const DESCRIBE: &str = r#"
import json, sys, boto3
endpoint, deployment = sys.argv[1], sys.argv[2]
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1")
tagged = [{"Name": "tag:deployment", "Values": [deployment]}]
instances = []
for r in ec2.describe_instances(Filters=tagged)["Reservations"]:
    for i in r["Instances"]:
        instances.append({
            "id": i["InstanceId"], "state": i["State"]["Name"], "type": i["InstanceType"],
            "key": i.get("KeyName"), "image": i["ImageId"],
            "groups": [g["GroupId"] for g in i.get("SecurityGroups", [])],
            "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
            "metadata_tokens": i.get("MetadataOptions", {}).get("HttpTokens"),
            "volumes": [
                {"device": m["DeviceName"], "encrypted": v["Encrypted"]}
                for m in i.get("BlockDeviceMappings", [])
                for v in ec2.describe_volumes(VolumeIds=[m["Ebs"]["VolumeId"]])["Volumes"]
            ],
        })
groups = []
for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]:
    rules = []
    for p in g["IpPermissions"]:
        rules.append({
            "port": p.get("FromPort"),
            "cidrs": sorted(r["CidrIp"] for r in p.get("IpRanges", [])),
            "groups": sorted(x["GroupId"] for x in p.get("UserIdGroupPairs", [])),
        })
    groups.append({"name": g["GroupName"], "id": g["GroupId"], "rules": rules})
keys = [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]
print(json.dumps({"instances": instances, "groups": groups, "keys": keys}))
"#;

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    let done = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(done, 0, "signal {signal} to moto ({pid})");
}
