//! Runs the real `seqd` binary on DPDK `net_pcap` ports and returns what each
//! interface sent. Input frames are built by the tests themselves (etherparse
//! or hand-made bytes), never with seqd's code.
//!
//! One [`Topology`] is a set of interfaces; each gets an input pcap (rx_pcap)
//! and an output pcap (tx_pcap) in a temporary directory. [`Topology::run`]
//! starts seqd with `--exit-when-idle`, waits for it to replay everything and
//! exit, and reads back the outputs and the final counters.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use serde_json::Value;

pub const SEQD: &str = env!("CARGO_BIN_EXE_seqd");

/// How long a run may take before the harness kills seqd and fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// One seqd interface in a test topology.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    /// "a.b.c.d/len"
    pub ipv4: String,
    pub mac: Option<String>,
    /// Frames replayed into seqd on this interface, in order.
    pub input: Vec<Vec<u8>>,
}

impl Iface {
    pub fn new(name: &str, ipv4: &str) -> Self {
        Iface {
            name: name.into(),
            ipv4: ipv4.into(),
            mac: None,
            input: Vec::new(),
        }
    }

    pub fn mac(mut self, mac: &str) -> Self {
        self.mac = Some(mac.into());
        self
    }

    pub fn input(mut self, frames: Vec<Vec<u8>>) -> Self {
        self.input = frames;
        self
    }
}

/// What one run of seqd produced.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stderr: String,
    /// Frames each interface transmitted, by interface name, in order.
    pub sent: HashMap<String, Vec<Vec<u8>>>,
    /// The `--stats-file` JSON.
    pub stats: Value,
    pub dir: PathBuf,
}

impl Outcome {
    pub fn drops(&self, reason: &str) -> u64 {
        self.stats["drops"][reason]
            .as_u64()
            .unwrap_or_else(|| panic!("no drop reason {reason} in stats: {}", self.stats))
    }

    pub fn total_drops(&self) -> u64 {
        self.stats["drops"]
            .as_object()
            .expect("drops object")
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum()
    }

    pub fn interface(&self, name: &str) -> &Value {
        self.stats["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no interface {name} in stats"))
    }

    pub fn sent(&self, iface: &str) -> &[Vec<u8>] {
        &self.sent[iface]
    }
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// A unique EAL file prefix, so tests can run in parallel.
pub fn file_prefix() -> String {
    format!(
        "seqd-test-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapWriter::new(File::create(path).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_micros(i as u64),
            f.len() as u32,
            f,
        ))
        .unwrap();
    }
}

/// How many whole frames a pcap that is still being written holds so far.
pub fn count_written(path: &Path) -> usize {
    let Ok(file) = File::open(path) else { return 0 };
    let Ok(mut r) = PcapReader::new(file) else {
        return 0;
    };
    let mut n = 0;
    while let Some(Ok(_)) = r.next_packet() {
        n += 1;
    }
    n
}

/// Every frame of a pcap file (nanosecond or microsecond).
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: corrupt pcap: {e}", path.display()));
        assert_eq!(
            p.data.len() as u32,
            p.orig_len,
            "{}: frame cut short",
            path.display()
        );
        out.push(p.data.into_owned());
    }
    out
}

pub struct Topology {
    pub ifaces: Vec<Iface>,
    /// Extra TOML appended to the generated config.
    pub extra_toml: String,
    pub dir: tempfile::TempDir,
    pub prefix: String,
}

impl Topology {
    pub fn new(ifaces: Vec<Iface>) -> Self {
        Topology {
            ifaces,
            extra_toml: String::new(),
            dir: tempfile::Builder::new()
                .prefix("seqd-test")
                .tempdir()
                .unwrap(),
            prefix: file_prefix(),
        }
    }

    pub fn input_path(&self, iface: &str) -> PathBuf {
        self.dir.path().join(format!("{iface}-in.pcap"))
    }

    pub fn output_path(&self, iface: &str) -> PathBuf {
        self.dir.path().join(format!("{iface}-out.pcap"))
    }

    pub fn stats_path(&self) -> PathBuf {
        self.dir.path().join("stats.json")
    }

    /// Writes the input pcaps and the config; returns the config path.
    pub fn prepare(&self) -> PathBuf {
        let mut toml = format!(
            "[eal]\ncores = \"0-1\"\nmain_lcore = 0\nhugepages = false\nmemory_mb = 256\nmbufs = 8191\nfile_prefix = \"{}\"\nextra_args = [\"--log-level=lib.eal:warning\"]\n\n[workers]\nlcores = [1]\nburst = 32\n\n",
            self.prefix
        );
        for (i, f) in self.ifaces.iter().enumerate() {
            write_pcap(&self.input_path(&f.name), &f.input);
            toml.push_str(&format!(
                "[[interface]]\nname = \"{}\"\ndevice = \"net_pcap{},rx_pcap={},tx_pcap={}\"\nipv4 = \"{}\"\n",
                f.name,
                i,
                self.input_path(&f.name).display(),
                self.output_path(&f.name).display(),
                f.ipv4
            ));
            if let Some(mac) = &f.mac {
                toml.push_str(&format!("mac = \"{mac}\"\n"));
            }
            toml.push('\n');
        }
        toml.push_str(&self.extra_toml);
        let path = self.dir.path().join("seqd.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    pub fn command(&self, config: &Path) -> Command {
        let mut c = Command::new(SEQD);
        c.arg("--config")
            .arg(config)
            .arg("--stats-file")
            .arg(self.stats_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Runs seqd until it has replayed every input and been idle for 300 ms.
    pub fn run(&self) -> Outcome {
        let config = self.prepare();
        let child = self
            .command(&config)
            .arg("--exit-when-idle")
            .arg("300")
            .spawn()
            .expect("start seqd");
        self.finish(child)
    }

    /// Waits for seqd to exit (killing it after RUN_TIMEOUT) and collects the outcome.
    pub fn finish(&self, mut child: Child) -> Outcome {
        let status = wait_timeout(&mut child, RUN_TIMEOUT);
        let mut stderr = String::new();
        use std::io::Read;
        // Tests that send stderr to a file of their own read it there.
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut stderr).unwrap();
        }
        let status =
            status.unwrap_or_else(|| panic!("seqd did not exit in time; stderr:\n{stderr}"));
        assert!(
            !Path::new("/var/run/dpdk").join(&self.prefix).exists(),
            "seqd left /var/run/dpdk/{} behind",
            self.prefix
        );
        let sent = self
            .ifaces
            .iter()
            .map(|f| (f.name.clone(), read_pcap(&self.output_path(&f.name))))
            .collect();
        let stats = std::fs::read_to_string(self.stats_path())
            .map(|s| serde_json::from_str(&s).expect("stats JSON"))
            .unwrap_or(Value::Null);
        Outcome {
            status,
            stderr,
            sent,
            stats,
            dir: self.dir.path().to_path_buf(),
        }
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Hex dump for assertion messages.
pub fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts two frame lists are equal, showing the first difference in hex.
pub fn assert_frames_eq(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g,
            w,
            "{what}: frame {i} differs\n got: {}\nwant: {}",
            hex(g),
            hex(w)
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: frame count");
}

// ---------------------------------------------------------------------------
// Sequencing helpers (services, devices, multiset comparison, ARP filtering,
// --check-config).
// ---------------------------------------------------------------------------

impl Outcome {
    /// The `services` entry of (service name, protocol "tcp"/"udp", port).
    pub fn service(&self, name: &str, protocol: &str, port: u16) -> &Value {
        self.stats["services"]
            .as_array()
            .unwrap_or_else(|| panic!("no services array in stats: {}", self.stats))
            .iter()
            .find(|s| s["service"] == name && s["protocol"] == protocol && s["port"] == port)
            .unwrap_or_else(|| {
                panic!(
                    "no services entry ({name}, {protocol}, {port}) in stats: {}",
                    self.stats["services"]
                )
            })
    }

    /// The `devices` entry of a device.
    pub fn device(&self, name: &str) -> &Value {
        self.stats["devices"]
            .as_array()
            .unwrap_or_else(|| panic!("no devices array in stats: {}", self.stats))
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| {
                panic!(
                    "no devices entry {name} in stats: {}",
                    self.stats["devices"]
                )
            })
    }

    /// A drop counter that may be absent from the stats (then 0).
    pub fn drops_or_zero(&self, reason: &str) -> u64 {
        self.stats["drops"][reason].as_u64().unwrap_or(0)
    }

    /// What an interface sent, without ARP frames (tagged or not): seqd may
    /// send ARP requests at any time.
    pub fn sent_ip(&self, iface: &str) -> Vec<Vec<u8>> {
        self.sent(iface)
            .iter()
            .filter(|f| !is_arp(f))
            .cloned()
            .collect()
    }

    /// Only the ARP frames an interface sent.
    pub fn sent_arp(&self, iface: &str) -> Vec<Vec<u8>> {
        self.sent(iface)
            .iter()
            .filter(|f| is_arp(f))
            .cloned()
            .collect()
    }

    /// Panics with stderr unless seqd exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "seqd failed: {}\n{}",
            self.status,
            self.stderr
        );
    }
}

/// The ethertype after any 802.1Q tags (None for a runt).
pub fn inner_ethertype(f: &[u8]) -> Option<u16> {
    let mut off = 12;
    loop {
        let t = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
        if t == 0x8100 || t == 0x88a8 {
            off += 4;
        } else {
            return Some(t);
        }
    }
}

pub fn is_arp(f: &[u8]) -> bool {
    inner_ethertype(f) == Some(0x0806)
}

/// Asserts two frame lists hold the same frames, in any order (for outputs
/// fed from more than one input interface, which seqd polls in turn).
pub fn assert_frames_multiset_eq(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    let mut got_sorted = got.to_vec();
    let mut want_sorted = want.to_vec();
    got_sorted.sort();
    want_sorted.sort();
    if got_sorted != want_sorted {
        let show = |v: &[Vec<u8>]| {
            v.iter()
                .map(|f| format!("  {}", hex(f)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let missing: Vec<Vec<u8>> = want_sorted
            .iter()
            .filter(|w| {
                got_sorted.iter().filter(|g| g == w).count()
                    < want_sorted.iter().filter(|x| x == w).count()
            })
            .cloned()
            .collect();
        let extra: Vec<Vec<u8>> = got_sorted
            .iter()
            .filter(|g| {
                want_sorted.iter().filter(|w| w == g).count()
                    < got_sorted.iter().filter(|x| x == g).count()
            })
            .cloned()
            .collect();
        panic!(
            "{what}: frames differ (any order): got {} want {}\nmissing:\n{}\nunexpected:\n{}",
            got.len(),
            want.len(),
            show(&missing),
            show(&extra)
        );
    }
}

impl Topology {
    /// Like [`Topology::run`], but seqd exits only after `idle_ms` without
    /// a received packet (to let its timers run: ARP retries, queue timeouts).
    pub fn run_idle(&self, idle_ms: u64) -> Outcome {
        let config = self.prepare();
        let child = self
            .command(&config)
            .arg("--exit-when-idle")
            .arg(idle_ms.to_string())
            .spawn()
            .expect("start seqd");
        self.finish(child)
    }
}

/// Runs `seqd --check-config FILE`; returns (exit code, stderr).
pub fn check_config_file(path: &Path) -> (i32, String) {
    let mut child = Command::new(SEQD)
        .arg("--check-config")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start seqd");
    let status =
        wait_timeout(&mut child, Duration::from_secs(30)).expect("seqd --check-config hung");
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

/// Writes `text` to a temporary file and runs `seqd --check-config` on it.
pub fn check_config_text(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("check.toml");
    std::fs::write(&path, text).unwrap();
    check_config_file(&path)
}

/// Kills a seqd a test started if the test fails before it could stop it,
/// and removes its EAL runtime directory, so a failing test leaves nothing
/// running or behind.
pub struct KillOnPanic {
    pid: u32,
    prefix: String,
}

impl KillOnPanic {
    pub fn new(child: &Child, prefix: &str) -> Self {
        KillOnPanic {
            pid: child.id(),
            prefix: prefix.to_string(),
        }
    }
}

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            std::thread::sleep(Duration::from_millis(100));
            let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
        }
    }
}

/// Waits until seqd's log file contains `needle`; returns the log.
pub fn wait_for_log(log: &Path, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{needle:?} not logged within 30 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The address the control thread listens on, from seqd's log (with
/// `listen = "127.0.0.1:0"` the kernel picks the port).
pub fn control_addr(log: &Path) -> String {
    wait_for_log(log, "control listening")
        .lines()
        .find(|l| l.contains("control listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .expect("an addr= field")
        .to_string()
}

/// One HTTP/1.0 request, with a bearer token if given; (status, body).
pub fn http(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: seqd\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_string())
}
