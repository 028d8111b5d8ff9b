//! `seqctl` through the real binaries: a seqd with the interfaces of
//! conf/pcap-demo.toml (on net_pcap ports) and a token, driven the way an
//! operator does: diff and apply conf/tables-example.toml, list, show, take
//! a device down, replace one, replicate a service, roll back, and the
//! errors (a bad file, a device in use, no token, nobody listening).

mod harness;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{file_prefix, wait_timeout, write_pcap, SEQD};
use serde_json::{json, Value};

const SEQCTL: &str = env!("CARGO_BIN_EXE_seqctl");
const TOKEN: &str = "seqctl-test-admin-token";
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tables-example.toml");
const PCAP_DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/pcap-demo.toml");

/// What one seqctl run did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout's lines with runs of spaces (table alignment) made one.
    fn lines(&self) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }

    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "seqctl failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs seqctl against `url` with the admin token in SEQD_TOKEN.
fn seqctl(url: &str, args: &[&str]) -> Run {
    seqctl_env(url, Some(TOKEN), args)
}

fn seqctl_env(url: &str, token: Option<&str>, args: &[&str]) -> Run {
    let mut c = Command::new(SEQCTL);
    c.args(args)
        .env("SEQD_URL", url)
        .env_remove("SEQD_TOKEN")
        .stdin(Stdio::null());
    if let Some(t) = token {
        c.env("SEQD_TOKEN", t);
    }
    let out = c.output().expect("run seqctl");
    Run {
        code: out.status.code().expect("seqctl exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// conf/pcap-demo.toml with its devices on pcap files in `dir`, its own EAL
/// prefix, and a control listener on a free port with an admin token.
fn demo_config(dir: &Path, prefix: &str) -> String {
    let mut c: toml::Table = toml::from_str(&std::fs::read_to_string(PCAP_DEMO).unwrap()).unwrap();
    c["eal"]["file_prefix"] = prefix.into();
    let ifaces = c["interface"].as_array_mut().unwrap();
    for (i, iface) in ifaces.iter_mut().enumerate() {
        let input = dir.join(format!("in{i}.pcap"));
        write_pcap(&input, &[vec![0xff; 60]]);
        iface["device"] = format!("net_pcap{i},rx_pcap={}", input.display()).into();
    }
    c.insert(
        "control".into(),
        toml::Value::Table(
            toml::from_str(&format!(
                "listen = \"127.0.0.1:0\"\nadmin_tokens = [\"{TOKEN}\"]"
            ))
            .unwrap(),
        ),
    );
    toml::to_string(&c).unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect()
}

#[test]
fn operator_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = file_prefix();
    let conf = dir.path().join("seqd.toml");
    std::fs::write(&conf, demo_config(dir.path(), &prefix)).unwrap();
    let log = dir.path().join("seqd.log");
    let mut child = Command::new(SEQD)
        .args(["--config", conf.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let _guard = harness::KillOnPanic::new(&child, &prefix);
    let url = format!("http://{}", harness::control_addr(&log));

    // No token: seqd's 401, readably.
    let r = seqctl_env(&url, None, &["list", "services"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(
        r.stderr,
        "seqctl: GET /v1/services: 401 Unauthorized\n  error: a valid bearer token is required\n"
    );
    // --token beats the environment.
    let r = seqctl_env(&url, Some("wrong"), &["--token", TOKEN, "list", "pools"]).ok();
    assert_eq!(r.lines(), ["POOL DEVICES"]);

    // diff: everything in the example would be new; nothing is applied.
    let want_changes = [
        "+ service acme-mail",
        "+ service acme-web",
        "+ device fw1",
        "+ device fw2",
        "+ device mail1",
        "+ device web1",
        "+ device web2",
        "+ pool web",
        "~ acls of service acme-web",
        "~ client",
    ];
    let r = seqctl(&url, &["diff", EXAMPLE]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let mut want = vec!["would be version 2 (validate): 3 service ports, 5 devices, 2 ACL rules"];
    want.extend(want_changes);
    assert_eq!(r.lines(), want, "{}", r.stdout);
    let versions = seqctl(&url, &["list", "versions", "--json"]).ok().json();
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");

    // apply: version 2, the same changes.
    let r = seqctl(&url, &["apply", EXAMPLE]).ok();
    let mut want = vec!["version 2 (rest): 3 service ports, 5 devices, 2 ACL rules"];
    want.extend(want_changes);
    assert_eq!(r.lines(), want, "{}", r.stdout);
    let r = seqctl(&url, &["diff", EXAMPLE]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "no changes\n"),
        "{}",
        r.stderr
    );

    // The version list shows it, with its time in RFC 3339 UTC.
    let r = seqctl(&url, &["list", "versions"]).ok();
    let lines = r.lines();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert_eq!(
        lines[0], "VERSION TIME ORIGIN PORTS DEVICES RULES CHANGE",
        "{}",
        r.stdout
    );
    let cells: Vec<&str> = lines[2].split(' ').collect();
    assert_eq!(cells[0], "2", "{}", r.stdout);
    assert_eq!(
        cells[2..],
        ["rest", "3", "5", "2", "PUT", "/v1/tables"],
        "{}",
        r.stdout
    );
    let time = cells[1].as_bytes();
    assert_eq!(time.len(), 20, "{}", cells[1]);
    assert_eq!(
        (time[4], time[7], time[10], time[13], time[16], time[19]),
        (b'-', b'-', b'T', b':', b':', b'Z'),
        "{}",
        cells[1]
    );
    assert!(cells[1] >= "2024" && cells[1] < "2200", "{}", cells[1]);

    // Lists.
    let r = seqctl(&url, &["list", "services"]).ok();
    assert_eq!(
        r.lines(),
        [
            "SERVICE IP PORTS -> HOPS",
            "acme-web 203.0.113.10 80/tcp -> fw1 -> web1; 443/tcp -> fw1 -> web1",
            "acme-mail 203.0.113.11 25/tcp -> fw1 -> mail1",
        ]
    );
    let r = seqctl(&url, &["list", "pools"]).ok();
    assert_eq!(r.lines(), ["POOL DEVICES", "web web1, web2"]);
    let r = seqctl(&url, &["list", "interfaces"]).ok();
    let lines = r.lines();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(
        lines[1].starts_with("client 192.0.2.1 02:00:00:00:01:01 "),
        "{}",
        r.stdout
    );
    assert!(
        lines[2].starts_with("devices 198.51.100.1 "),
        "{}",
        r.stdout
    );

    // A device down: its alternate takes over.
    let r = seqctl(&url, &["device-state", "fw1", "down"]).ok();
    assert_eq!(
        r.lines(),
        [
            "version 3 (rest): 3 service ports, 5 devices, 2 ACL rules",
            "~ device fw1",
            "device fw1 is down; fw2 takes over",
        ]
    );
    let r = seqctl(&url, &["list", "devices"]).ok();
    assert_eq!(
        r.lines(),
        [
            "DEVICE MODE INTERFACE MAC IPV4 STATE TAKEN_OVER_BY ALTERNATE",
            "fw1 loopback devices 52:54:00:00:00:10 - down fw2 fw2",
            "fw2 loopback devices 52:54:00:00:00:11 - up - -",
            "web1 nat devices 52:54:00:00:00:31 198.51.100.31 up - -",
            "web2 nat devices 52:54:00:00:00:32 198.51.100.32 up - -",
            "mail1 alias devices 52:54:00:00:00:40 - up - -",
        ]
    );
    let d = seqctl(&url, &["show", "device", "fw1"]).ok().json();
    assert_eq!(d["state"], "down");
    assert_eq!(d["taken_over_by"], "fw2");
    assert_eq!(
        d["used_by"],
        json!(["service acme-web", "service acme-mail"])
    );
    seqctl(&url, &["device-state", "fw1", "up"]).ok();

    // A device in use cannot go: 409 and who uses it.
    let r = seqctl(&url, &["delete", "device", "fw1"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(
        r.stderr,
        "seqctl: DELETE /v1/devices/fw1: 409 Conflict\n  error: device \"fw1\" is still in use\n  used by: service acme-web, service acme-mail\n"
    );
    let r = seqctl(&url, &["delete", "device", "fw2"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.ends_with("  used by: device fw1 (alternate)\n"),
        "{}",
        r.stderr
    );

    // A bad file: exit 2, the key path and the value; nothing changes.
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace("hops = [\"fw1\", \"mail1\"]", "hops = [\"fw1\", \"mail9\"]");
    std::fs::write(&bad, text).unwrap();
    let before = seqctl(&url, &["list", "versions", "--json"]).ok().json();
    for cmd in ["apply", "diff"] {
        let r = seqctl(&url, &[cmd, bad.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{cmd}: {}", r.stdout);
        let request = if cmd == "apply" {
            "PUT /v1/tables"
        } else {
            "POST /v1/validate"
        };
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(
            lines[0],
            format!("seqctl: {request}: 400 Bad Request"),
            "{}",
            r.stderr
        );
        assert!(lines[1].starts_with("  error: "), "{}", r.stderr);
        assert!(lines[1].contains("mail9"), "{}", r.stderr);
        assert_eq!(
            lines[2..4],
            ["  key: service[1].port[0].hops[1]", "  value: \"mail9\""],
            "{}",
            r.stderr
        );
        assert!(
            lines[4].starts_with(&format!("  file: {}", bad.display())),
            "{}",
            r.stderr
        );
    }
    let after = seqctl(&url, &["list", "versions", "--json"]).ok().json();
    assert_eq!(before, after);

    // Replace a device everywhere; replicate a service.
    let r = seqctl(&url, &["replace-device", "web1", "web2"]).ok();
    assert_eq!(
        r.lines()[1..],
        ["~ service acme-web", "regenerated services: acme-web"],
        "{}",
        r.stdout
    );
    // (acme-web's server is a NAT device: a copy on the same port would be
    // ambiguous, and is refused.)
    let r = seqctl(
        &url,
        &["replicate", "acme-web", "acme-web-2", "203.0.113.12"],
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("would also match service \"acme-web\""),
        "{}",
        r.stderr
    );
    let r = seqctl(
        &url,
        &["replicate", "acme-mail", "acme-mail-2", "203.0.113.12"],
    )
    .ok();
    assert_eq!(r.lines()[1..], ["+ service acme-mail-2"], "{}", r.stdout);
    let s = seqctl(&url, &["show", "service", "acme-mail-2"])
        .ok()
        .json();
    assert_eq!(s["ip"], "203.0.113.12");
    assert_eq!(s["port"][0]["hops"], json!(["fw1", "mail1"]));
    let r = seqctl(&url, &["delete", "service", "acme-mail"]).ok();
    assert_eq!(r.lines()[1..], ["- service acme-mail"], "{}", r.stdout);

    // Counters per service port.
    let r = seqctl(&url, &["stats", "--service", "acme-web"]).ok();
    assert_eq!(
        r.lines(),
        [
            "SERVICE IP PORT PACKETS_IN BYTES_IN PACKETS_OUT BYTES_OUT",
            "acme-web 203.0.113.10 80/tcp 0 0 0 0",
            "acme-web 203.0.113.10 443/tcp 0 0 0 0",
        ]
    );
    let all = seqctl(&url, &["stats", "--json"]).ok().json();
    assert_eq!(all["table_version"], 7, "{all}");
    let r = seqctl(&url, &["stats", "--service", "nobody"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no counters for service \"nobody\""),
        "{}",
        r.stderr
    );

    // Roll back to version 2: the example's services as they were.
    let r = seqctl(&url, &["rollback", "2"]).ok();
    assert_eq!(
        r.lines(),
        [
            "version 8 (rollback): 3 service ports, 5 devices, 2 ACL rules",
            "+ service acme-mail",
            "- service acme-mail-2",
            "~ service acme-web",
        ]
    );
    let services = seqctl(&url, &["list", "services", "--json"]).ok().json();
    assert_eq!(names(&services), ["acme-web", "acme-mail"]);
    assert_eq!(services[0]["port"][0]["hops"], json!(["fw1", "web1"]));
    let versions = seqctl(&url, &["list", "versions", "--json"]).ok().json();
    let last = versions.as_array().unwrap().last().unwrap();
    assert_eq!(
        (&last["version"], &last["origin"]),
        (&json!(8), &json!("rollback"))
    );
    assert_eq!(last["change"], "rollback to 2");
    let v2 = seqctl(&url, &["show", "version", "2"]).ok().json();
    assert_eq!(v2["version"]["version"], 2);
    assert_eq!(names(&v2["tables"]["service"]), ["acme-web", "acme-mail"]);

    // What `show tables` prints, `apply` takes back: no change.
    let backup = dir.path().join("backup.json");
    std::fs::write(&backup, seqctl(&url, &["show", "tables"]).ok().stdout).unwrap();
    let r = seqctl(&url, &["diff", backup.to_str().unwrap()]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "no changes\n"),
        "{}",
        r.stderr
    );
    // A whole seqd config file: only its tables are sent (it has none
    // here, so applying it would empty everything: refused).
    let r = seqctl(&url, &["apply", conf.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("would remove every table"),
        "{}",
        r.stderr
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("seqd exits");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!Path::new("/var/run/dpdk").join(&prefix).exists());
}

#[test]
fn unreachable_seqd_is_named() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let r = seqctl(&url, &["list", "services"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with(&format!("seqctl: cannot reach seqd at {url}: connect: ")),
        "{}",
        r.stderr
    );
    let r = seqctl("https://127.0.0.1:1", &["list", "services"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("plain HTTP only"), "{}", r.stderr);
    // Usage errors are exit 2 as well.
    let r = seqctl(&url, &["list", "everything"]);
    assert_eq!(r.code, 2);
}
