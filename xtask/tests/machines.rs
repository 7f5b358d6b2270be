//! The remote path on machines like fresh cloud instances (a fleet of booted Debian machines
//! with systemd, reached only over SSH): the ssh provider end to end.

mod common;

use common::fleet::Fleet;
use common::Deployment;

#[test]
fn smoke() {
    let fleet = Fleet::boot("smoke", "127.0.96", 7);
    let d = Deployment::new("smoke", "127.0.96");
    let inventory = d.dir.join("machines.toml");
    fleet.inventory(&inventory, &[0, 1, 2, 3, 4, 5, 6], |_| String::new());
    let out = d.ok(&[
        "all",
        "--quick",
        "--provider",
        "ssh",
        "--hosts",
        inventory.to_str().unwrap(),
        "--workers",
        "2",
        "--scale",
        "1",
    ]);
    eprintln!("{out}");
    eprintln!("{}", d.ok(&["status"]));
}
