//! One lab: the namespaces of scripts/e2e-topology.sh, the seqd of
//! conf/e2e.toml running in one of them, and every process a test starts
//! there. Dropping a [`Lab`] — the test passed or panicked — stops seqd
//! (SIGTERM, then SIGKILL), kills what the test started, removes the
//! namespaces and seqd's `/var/run/dpdk` prefix.
//!
//! Labs run one at a time (a process-wide lock): seqd's worker busy-polls
//! one of the machine's two cores and the hosts' TCP needs the other.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SEQD: &str = env!("CARGO_BIN_EXE_seqd");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

static SERIAL: Mutex<()> = Mutex::new(());
static LABS: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    /// sqe-TAG-ROLE namespaces; TAG starts with this process's pid, so
    /// `e2e-topology.sh reap` can tell a lab whose test was killed.
    pub tag: String,
    pub dir: tempfile::TempDir,
    seqd: Option<Child>,
    children: Vec<Child>,
    _serial: MutexGuard<'static, ()>,
}

fn script(name: &str) -> PathBuf {
    Path::new(ROOT).join("scripts").join(name)
}

impl Lab {
    /// Creates the namespaces (not yet seqd).
    pub fn up() -> Lab {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        // pid, then a letter per lab: "4711a", "4711b", ...
        let tag = format!("{}{}", std::process::id(), (b'a' + (n % 26) as u8) as char);
        let lab = Lab {
            tag,
            dir: tempfile::Builder::new()
                .prefix("sqe-e2e")
                .tempdir()
                .unwrap(),
            seqd: None,
            children: Vec::new(),
            _serial: serial,
        };
        let out = Command::new("bash")
            .arg(script("e2e-topology.sh"))
            .args(["up", &lab.tag])
            .output()
            .expect("run e2e-topology.sh");
        assert!(
            out.status.success(),
            "e2e-topology.sh up {} failed:\n{}",
            lab.tag,
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    pub fn ns(&self, role: &str) -> String {
        format!("sqe-{}-{role}", self.tag)
    }

    pub fn prefix(&self) -> String {
        format!("sqe-{}", self.tag)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("seqd.log")).unwrap_or_default()
    }

    /// conf/e2e.toml as a TOML value (the lab's own file_prefix set).
    pub fn config() -> toml::Value {
        let text = std::fs::read_to_string(Path::new(ROOT).join("conf/e2e.toml")).unwrap();
        toml::from_str(&text).unwrap()
    }

    /// Starts seqd with conf/e2e.toml and waits until it serves REST.
    pub fn start_seqd(&mut self) {
        let mut conf = Self::config();
        conf["eal"]["file_prefix"] = toml::Value::String(self.prefix());
        let path = self.path("seqd.toml");
        std::fs::write(&path, toml::to_string(&conf).unwrap()).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("seqd"), SEQD, "--config"])
            .arg(&path)
            .arg("--stats-file")
            .arg(self.path("stats.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.path("seqd.log")).unwrap())
            .spawn()
            .expect("start seqd");
        self.seqd = Some(child);
        let start = Instant::now();
        while !self.log().contains("seqd ready") || self.ctl("GET", "/healthz", "").0 != 200 {
            if let Some(s) = self.seqd.as_mut().unwrap().try_wait().unwrap() {
                panic!("seqd exited ({s}) at start:\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "seqd not ready in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops seqd with SIGTERM; returns its final counters (--stats-file).
    pub fn stop_seqd(&mut self) -> Value {
        let mut child = self.seqd.take().expect("seqd running");
        let status = terminate(&mut child);
        assert!(status, "seqd did not exit 0 on SIGTERM:\n{}", self.log());
        assert!(
            !Path::new("/var/run/dpdk").join(self.prefix()).exists(),
            "seqd left /var/run/dpdk/{} behind",
            self.prefix()
        );
        serde_json::from_str(&std::fs::read_to_string(self.path("stats.json")).unwrap()).unwrap()
    }

    /// A command in a role's namespace, killed after `secs`.
    pub fn run(&self, role: &str, secs: u32, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["-k", "5", &secs.to_string(), "ip", "netns", "exec"])
            .arg(self.ns(role))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run a command in a lab namespace")
    }

    /// Like [`Lab::run`], but it must succeed; returns stdout.
    pub fn ok(&self, role: &str, secs: u32, args: &[&str]) -> String {
        let out = self.run(role, secs, args);
        assert!(
            out.status.success(),
            "in {role}: {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts a long-running process in a role's namespace; the lab kills it.
    pub fn spawn(&mut self, role: &str, args: &[&str], log: &str) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(self.path(log)).unwrap())
            .stderr(File::create(self.path(&format!("{log}.err"))).unwrap())
            .spawn()
            .expect("spawn in a lab namespace");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Stops one process this lab started (SIGTERM; SIGKILL after 5 s).
    pub fn stop(&mut self, pid: u32) -> bool {
        let i = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .expect("a process of this lab");
        let mut child = self.children.remove(i);
        terminate(&mut child)
    }

    /// Waits for a process this lab started to exit by itself (killing it
    /// after `secs`); true if it exited 0.
    pub fn wait(&mut self, pid: u32, secs: u64) -> bool {
        let i = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .expect("a process of this lab");
        let mut child = self.children.remove(i);
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s.success();
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// HTTP and UDP servers of scripts/e2e-tool.py serving the lab's data
    /// directory; returns once every socket listens.
    pub fn serve(&mut self, role: &str, http: &[u16], udp: Option<u16>) {
        let ready = self.path(&format!("{role}.ready"));
        let tool = script("e2e-tool.py");
        let dir = self.path("www");
        let mut args: Vec<String> = vec![
            "python3".into(),
            tool.display().to_string(),
            "serve".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--ready".into(),
            ready.display().to_string(),
        ];
        if !http.is_empty() {
            args.push("--http".into());
            args.extend(http.iter().map(|p| p.to_string()));
        }
        if let Some(p) = udp {
            args.push("--udp".into());
            args.push(p.to_string());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = self.spawn(role, &argv, &format!("{role}.serve"));
        let start = Instant::now();
        while !ready.exists() {
            assert!(
                self.children
                    .iter_mut()
                    .any(|c| c.id() == pid && c.try_wait().unwrap().is_none()),
                "server in {role} exited: {}",
                std::fs::read_to_string(self.path(&format!("{role}.serve.err")))
                    .unwrap_or_default()
            );
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server in {role} not listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes the files the servers serve: big.bin (`big` bytes of
    /// pseudo-random data) and small.txt; returns big.bin's sha256.
    pub fn www(&self, big: usize) -> String {
        let dir = self.path("www");
        std::fs::create_dir_all(&dir).unwrap();
        // xorshift64: incompressible enough, and no random source needed.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut data = Vec::with_capacity(big);
        while data.len() < big {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(big);
        std::fs::write(dir.join("big.bin"), &data).unwrap();
        std::fs::write(
            dir.join("small.txt"),
            b"seqd e2e small response\n".repeat(20),
        )
        .unwrap();
        sha256(&dir.join("big.bin"))
    }

    /// One request to seqd's control API (inside seqd's namespace); (status, body).
    pub fn ctl(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:8080{path}");
        let body_file = self.path("ctl-body.json");
        std::fs::write(&body_file, body).unwrap();
        let data = format!("@{}", body_file.display());
        let mut args = vec![
            "curl",
            "-s",
            "-m",
            "10",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ];
        if !body.is_empty() {
            args.extend([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &data,
            ]);
        }
        args.push(&url);
        let out = self.run("seqd", 15, &args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// seqd's live counters (`GET /v1/stats`).
    pub fn stats(&self) -> Value {
        let (code, body) = self.ctl("GET", "/v1/stats", "");
        assert_eq!(code, 200, "GET /v1/stats: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until every worker runs table version `v`.
    pub fn wait_table_version(&self, v: u64) {
        let start = Instant::now();
        loop {
            let s = self.stats();
            let workers = s["workers"].as_array().unwrap();
            if workers.iter().all(|w| w["table_version"] == v) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "workers never took version {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An nftables named counter in a role's namespace: (packets, bytes).
    pub fn nft_counter(&self, role: &str, family: &str, table: &str, name: &str) -> (u64, u64) {
        let out = self.ok(
            role,
            10,
            &["nft", "-j", "list", "counter", family, table, name],
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        let c = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|o| o.get("counter"))
            .unwrap_or_else(|| panic!("no counter {name} in {out}"));
        (c["packets"].as_u64().unwrap(), c["bytes"].as_u64().unwrap())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut s) = self.seqd.take() {
            terminate(&mut s);
        }
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Removes the namespaces (and every process still in them, e.g. a
        // client a timed-out command left) and the DPDK prefix.
        let _ = Command::new("bash")
            .arg(script("e2e-topology.sh"))
            .args(["down", &self.tag])
            .status();
    }
}

/// SIGTERM, then SIGKILL after 10 s; true if the process exited 0.
fn terminate(child: &mut Child) -> bool {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.success();
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The entry of `stats["services"]` for (service, port).
pub fn service<'a>(stats: &'a Value, name: &str, port: u16) -> &'a Value {
    stats["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == name && s["port"] == port)
        .unwrap_or_else(|| panic!("no service {name}:{port} in {}", stats["services"]))
}

/// The entry of `stats["devices"]` for a device.
pub fn device<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no device {name} in {}", stats["devices"]))
}

pub fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}
