//! Brings seqd up from a validated [`Config`] and takes it down again:
//! EAL, mempool, ports, one worker per configured lcore, the shutdown signal,
//! and the final counters.
//!
//! Shutdown order matters: workers stop and flush their tx buffers, then the
//! ports stop and close (which completes pcap outputs), then the mempool is
//! freed and EAL cleaned up.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{error, info, warn};

use crate::control::config::{available_cpus, Config};
use crate::control::services::CompiledAclInfo;
use crate::control::services::{self, ProtocolConfig};
use crate::control::slots::Slots;
use crate::control::state::{self, ControlState};
use crate::control::{api, metrics};
use crate::datapath::counters::{Counters, DeviceCounters, DropReason, ServiceCounters, Sizes};
use crate::datapath::dpdk::PortStatsHandle;
use crate::datapath::dpdk::{self, Eal, LinkStatus, Mempool, Port, PortSetup, PortStats};
use crate::datapath::packet::MacAddr;
use crate::datapath::pipeline::{Datapath, Interface};
use crate::datapath::tables::{Published, Tables};
use crate::datapath::worker::{RxPort, Worker, WorkerContext};
use arc_swap::ArcSwap;
use parking_lot::Mutex;

/// Descriptors per rx and tx queue.
pub const RX_DESC: u16 = 1024;
pub const TX_DESC: u16 = 1024;
/// Per-lcore mempool cache (DPDK caps it at 512).
pub const MBUF_CACHE: u32 = 256;
/// Data room per mbuf: a 1518-byte frame plus the default 128-byte headroom.
pub const MBUF_DATA_ROOM: u16 = 2048 + 128;

const ENOTSUP: i32 = 95;

/// How the run ends besides a signal.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop once no worker has received a packet for this long (replayed
    /// pcaps in tests and benchmarks).
    pub exit_when_idle: Option<Duration>,
    /// Stop after this long, whatever the traffic (benchmarks).
    pub duration: Option<Duration>,
    /// Write the final counters here as JSON.
    pub stats_file: Option<PathBuf>,
    /// The config file, re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
}

#[derive(Debug)]
pub enum RunError {
    Dpdk(dpdk::DpdkError),
    Io(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Dpdk(e) => write!(f, "{e}"),
            RunError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<dpdk::DpdkError> for RunError {
    fn from(e: dpdk::DpdkError) -> Self {
        RunError::Dpdk(e)
    }
}

#[derive(Debug, Serialize)]
pub struct InterfaceStats {
    pub name: String,
    pub device: String,
    pub mac: String,
    pub ipv4: Ipv4Addr,
    pub port: PortStats,
    pub link: Option<LinkStatus>,
}

#[derive(Debug, Serialize)]
pub struct ServiceStats {
    pub service: String,
    pub ip: Ipv4Addr,
    pub protocol: String,
    pub port: u16,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Serialize)]
pub struct DeviceStats {
    pub name: String,
    pub packets_to: u64,
    pub bytes_to: u64,
    pub packets_from: u64,
    pub bytes_from: u64,
}

/// What one ACL rule decided.
#[derive(Debug, Serialize)]
pub struct AclRuleStats {
    pub id: u32,
    pub interface: String,
    /// None: a provider rule.
    pub service: Option<String>,
    pub priority: u32,
    pub action: &'static str,
    /// The single client host the rule names (/32), if it does.
    pub client: Option<Ipv4Addr>,
    pub packets: u64,
    pub bytes: u64,
}

/// What a rule set's default action decided.
#[derive(Debug, Serialize)]
pub struct AclDefaultStats {
    pub interface: String,
    pub service: Option<String>,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// A single client host's traffic, as decided by the rules that name it.
#[derive(Debug, Serialize)]
pub struct AclClientStats {
    pub interface: String,
    pub service: Option<String>,
    pub client: Ipv4Addr,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct WorkerStats {
    pub lcore: u32,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub arp_replies: u64,
    pub arp_requests: u64,
    pub arp_learned: u64,
    pub busy_cycles: u64,
    pub total_cycles: u64,
    /// Cycles of seqd's own work on bursts (without the PMD's rx/tx):
    /// `work_cycles / rx_packets` is seqd's cost per packet.
    pub work_cycles: u64,
    /// The table version the worker runs.
    pub table_version: u64,
}

/// Everything seqd counted, as written to `--stats-file`.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// TSC ticks per second: converts the workers' cycle counts to time.
    pub tsc_hz: u64,
    /// The table version running at exit.
    pub table_version: u64,
    pub interfaces: Vec<InterfaceStats>,
    pub workers: Vec<WorkerStats>,
    pub services: Vec<ServiceStats>,
    pub devices: Vec<DeviceStats>,
    pub acl_rules: Vec<AclRuleStats>,
    pub acl_defaults: Vec<AclDefaultStats>,
    pub acl_clients: Vec<AclClientStats>,
    pub drops: std::collections::BTreeMap<&'static str, u64>,
}

/// What the counters are read from: shared with the control thread, which
/// reads it on every scrape while the workers run.
#[derive(Clone)]
pub struct StatsSource {
    pub config: Arc<Config>,
    /// One per interface, in config order, with the MAC seqd uses there.
    pub ports: Vec<(PortStatsHandle, MacAddr)>,
    pub published: Arc<Published>,
    /// Replaced with the tables on every published version.
    pub acl_info: Arc<ArcSwap<CompiledAclInfo>>,
    pub counters: Arc<Counters>,
    /// How long each accepted update took to compile and publish.
    pub publish_seconds: prometheus::Histogram,
}

impl StatsSource {
    pub fn collect(&self) -> Stats {
        collect_stats(
            &self.config,
            &self.ports,
            &self.published.load(0),
            &self.acl_info.load(),
            &self.counters,
        )
    }
}

fn collect_stats(
    config: &Config,
    ports: &[(PortStatsHandle, MacAddr)],
    tables: &Tables,
    acl: &CompiledAclInfo,
    counters: &Counters,
) -> Stats {
    let acl_rules: Vec<AclRuleStats> = acl
        .rules
        .iter()
        .map(|r| AclRuleStats {
            id: r.slot,
            interface: r.interface.to_string(),
            service: r.service.as_deref().map(str::to_string),
            priority: r.priority,
            action: r.action,
            client: r.client,
            packets: counters.sum(|w| {
                w.acl_rules
                    .get(r.slot as usize)
                    .map_or(0, |h| h.packets.get())
            }),
            bytes: counters.sum(|w| {
                w.acl_rules
                    .get(r.slot as usize)
                    .map_or(0, |h| h.bytes.get())
            }),
        })
        .collect();
    let acl_defaults = acl
        .defaults
        .iter()
        .map(|d| AclDefaultStats {
            interface: d.interface.to_string(),
            service: d.service.as_deref().map(str::to_string),
            action: d.action,
            packets: counters.sum(|w| {
                w.acl_defaults
                    .get(d.slot as usize)
                    .map_or(0, |h| h.packets.get())
            }),
            bytes: counters.sum(|w| {
                w.acl_defaults
                    .get(d.slot as usize)
                    .map_or(0, |h| h.bytes.get())
            }),
        })
        .collect();
    // Per client: what the rules naming that single host decided.
    let mut clients: std::collections::BTreeMap<(String, Option<String>, Ipv4Addr), (u64, u64)> =
        Default::default();
    for r in &acl_rules {
        if let Some(c) = r.client {
            let e = clients
                .entry((r.interface.clone(), r.service.clone(), c))
                .or_default();
            e.0 += r.packets;
            e.1 += r.bytes;
        }
    }
    let acl_clients = clients
        .into_iter()
        .map(
            |((interface, service, client), (packets, bytes))| AclClientStats {
                interface,
                service,
                client,
                packets,
                bytes,
            },
        )
        .collect();
    let services = tables
        .ports
        .iter()
        .map(|p| {
            let sum = |f: fn(&ServiceCounters) -> u64| {
                counters.sum(|w| w.services.get(p.slot as usize).map_or(0, f))
            };
            ServiceStats {
                service: p.service.clone(),
                ip: p.ip,
                protocol: p.protocol.to_string().to_lowercase(),
                port: p.port,
                packets_in: sum(|c| c.packets_in.get()),
                bytes_in: sum(|c| c.bytes_in.get()),
                packets_out: sum(|c| c.packets_out.get()),
                bytes_out: sum(|c| c.bytes_out.get()),
            }
        })
        .collect();
    let devices = tables
        .devices
        .iter()
        .map(|d| {
            let sum = |f: fn(&DeviceCounters) -> u64| {
                counters.sum(|w| w.devices.get(d.slot as usize).map_or(0, f))
            };
            DeviceStats {
                name: d.name.clone(),
                packets_to: sum(|c| c.packets_to.get()),
                bytes_to: sum(|c| c.bytes_to.get()),
                packets_from: sum(|c| c.packets_from.get()),
                bytes_from: sum(|c| c.bytes_from.get()),
            }
        })
        .collect();
    let interfaces = config
        .interfaces
        .iter()
        .zip(ports)
        .map(|(ic, (p, mac))| InterfaceStats {
            name: ic.name.clone(),
            device: ic.device_name().to_string(),
            mac: mac.to_string(),
            ipv4: ic.ipv4.addr,
            port: p.stats().unwrap_or_default(),
            link: p.link().ok(),
        })
        .collect();
    let workers = config
        .workers
        .lcores
        .iter()
        .zip(counters.workers())
        .map(|(&lcore, w)| WorkerStats {
            lcore,
            rx_packets: w.rx_packets.get(),
            rx_bytes: w.rx_bytes.get(),
            tx_packets: w.tx_packets.get(),
            arp_replies: w.arp_replies.get(),
            arp_requests: w.arp_requests.get(),
            arp_learned: w.arp_learned.get(),
            busy_cycles: w.busy_cycles.get(),
            total_cycles: w.total_cycles.get(),
            work_cycles: w.work_cycles.get(),
            table_version: w.table_version.get(),
        })
        .collect();
    let drops = DropReason::ALL
        .iter()
        .map(|&r| (r.name(), counters.drops(r)))
        .collect();
    Stats {
        tsc_hz: dpdk::tsc_hz(),
        table_version: tables.version,
        interfaces,
        workers,
        services,
        devices,
        acl_rules,
        acl_defaults,
        acl_clients,
        drops,
    }
}

fn log_stats(s: &Stats) {
    for i in &s.interfaces {
        info!(
            interface = %i.name,
            rx_packets = i.port.rx_packets,
            tx_packets = i.port.tx_packets,
            rx_missed = i.port.rx_missed,
            rx_errors = i.port.rx_errors,
            tx_errors = i.port.tx_errors,
            rx_nombuf = i.port.rx_nombuf,
            "port counters"
        );
    }
    for w in &s.workers {
        info!(
            lcore = w.lcore,
            rx_packets = w.rx_packets,
            tx_packets = w.tx_packets,
            busy = format_args!(
                "{:.1}%",
                100.0 * w.busy_cycles as f64 / w.total_cycles.max(1) as f64
            ),
            "worker counters"
        );
    }
    let drops: Vec<String> = s
        .drops
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    info!(drops = %drops.join(" "), "drops by reason");
}

/// What signals ask of the main loop.
#[derive(Clone, Default)]
pub struct Signals {
    /// SIGINT / SIGTERM: stop.
    pub quit: Arc<AtomicBool>,
    /// SIGHUP: reload the config file.
    pub reload: Arc<AtomicBool>,
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread
/// created after, EAL's included) and turns their arrival into flags on a
/// thread of their own. Call before EAL init.
pub fn install_signal_flag(signals: Signals) -> std::io::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block().map_err(std::io::Error::from)?;
    let Signals { quit, reload } = signals;
    std::thread::Builder::new()
        .name("seqd-signals".into())
        .spawn(move || loop {
            match set.wait() {
                Ok(Signal::SIGHUP) => {
                    info!("SIGHUP: reloading the config");
                    reload.store(true, Ordering::SeqCst);
                }
                Ok(sig) => {
                    if quit.swap(true, Ordering::SeqCst) {
                        // Second signal while shutting down: stop now.
                        warn!(signal = %sig, "second signal, exiting at once");
                        std::process::exit(130);
                    }
                    info!(signal = %sig, "shutting down");
                }
                Err(e) => {
                    error!("sigwait failed: {e}");
                    return;
                }
            }
        })?;
    Ok(())
}

/// Runs seqd until a signal or a [`RunOptions`] condition stops it.
pub fn run(config: &Config, opts: &RunOptions, signals: Signals) -> Result<Stats, RunError> {
    // EAL pins this thread to the main lcore: remember every CPU first, so
    // a reloaded config is checked against the machine, not the pin.
    let cpus = available_cpus();
    let eal = Eal::init(&config.eal_args())?;
    info!(version = %dpdk::version(), main_lcore = eal.main_lcore(), "EAL ready");
    let result = run_with_eal(&eal, config, opts, signals, &cpus);
    drop(eal);
    remove_runtime_dir(&config.eal.file_prefix);
    result
}

fn run_with_eal(
    eal: &Eal,
    config: &Config,
    opts: &RunOptions,
    signals: Signals,
    cpus: &[u32],
) -> Result<Stats, RunError> {
    let quit = Arc::clone(&signals.quit);
    let (restored, first_version) = restore_state(config, cpus)?;
    let config = &restored;
    let nworkers = config.workers.lcores.len();
    for &l in &config.workers.lcores {
        if !eal.lcore_enabled(l) {
            return Err(RunError::Io(format!(
                "workers.lcores: lcore {l} is not enabled in EAL"
            )));
        }
    }
    let socket = eal.socket_of_lcore(config.workers.lcores[0]);
    let pool = Arc::new(Mempool::new(
        "seqd_mbufs",
        config.eal.mbufs,
        MBUF_CACHE,
        MBUF_DATA_ROOM,
        socket,
    )?);

    // Ports are declared after the pool so they drop (close) before it.
    let mut ports = Vec::with_capacity(config.interfaces.len());
    let mut interfaces = Vec::with_capacity(config.interfaces.len());
    for ic in &config.interfaces {
        let port_err = |e: dpdk::DpdkError| {
            RunError::Io(format!("interface {} ({}): {e}", ic.name, ic.device))
        };
        let port = Port::open(
            &ic.port_name(),
            &PortSetup {
                rx_queues: nworkers as u16,
                tx_queues: nworkers as u16,
                rx_desc: RX_DESC,
                tx_desc: TX_DESC,
                pool: &pool,
            },
        )
        .map_err(port_err)?;
        let mac = match ic.mac {
            None => MacAddr(port.mac().map_err(port_err)?),
            Some(mac) => {
                match port.set_mac(mac.0) {
                    Ok(()) => {}
                    // The port is promiscuous, so frames to the configured MAC
                    // still arrive; seqd uses it as its source MAC in software.
                    Err(e) if e.errno == ENOTSUP => {
                        warn!(interface = %ic.name, %mac, "the device cannot change its MAC; using it in software (promiscuous)")
                    }
                    Err(e) => return Err(port_err(e)),
                }
                mac
            }
        };
        info!(interface = %ic.name, device = %ic.device_name(), port = port.id(), %mac, ipv4 = %ic.ipv4, "port started");
        ports.push(port);
        interfaces.push(Interface {
            mac,
            ipv4: ic.ipv4.addr,
        });
    }

    let macs: Vec<MacAddr> = interfaces.iter().map(|i| i.mac).collect();
    let datapath = Arc::new(Datapath::new(interfaces));
    let mut slots = first_slots(config);
    let compile_started = std::time::Instant::now();
    let compiled = services::compile_all(config, first_version, &mut slots).map_err(|e| {
        RunError::Io(format!(
            "{} = {}: {}",
            e.key,
            e.value.unwrap_or_default(),
            e.message
        ))
    })?;
    let acl_info = compiled.acls;
    let tables = compiled.tables;
    info!(
        service_ports = tables.ports.len(),
        devices = tables.devices.len(),
        neighbors = tables.neighbors.len(),
        version = tables.version,
        table_bytes = tables.memory_bytes(),
        compile_us = compile_started.elapsed().as_micros() as u64,
        "tables compiled"
    );
    let counters = Arc::new(Counters::new(
        nworkers,
        Sizes {
            service_ports: slots.service_ports.capacity(),
            devices: slots.devices.capacity(),
            acl_rules: slots.acl_rules.capacity(),
            acl_defaults: slots.acl_defaults.capacity(),
        },
    ));
    let sockets: Vec<i32> = config
        .workers
        .lcores
        .iter()
        .map(|&l| eal.socket_of_lcore(l))
        .collect();
    let published = Arc::new(Published::on_sockets(tables, &sockets));
    // Parsing the config file and the first compile free far more than
    // they keep (1.8 GB for 100,000 services); give it back.
    dpdk::release_free_heap();
    let source = StatsSource {
        config: Arc::new(config.clone()),
        ports: ports.iter().map(Port::stats_handle).zip(macs).collect(),
        published: Arc::clone(&published),
        acl_info: Arc::new(ArcSwap::from_pointee(acl_info)),
        counters: Arc::clone(&counters),
        publish_seconds: metrics::publish_histogram(),
    };
    let state = Arc::new(Mutex::new(ControlState::new(
        config.clone(),
        slots,
        cpus.to_vec(),
        Arc::clone(&published),
        source.clone(),
    )));
    // The control thread starts before the workers: if it cannot listen,
    // nothing runs.
    let control = match &config.control {
        None => None,
        Some(c) => Some(
            api::serve(
                c.listen,
                c.metrics_listen,
                source.clone(),
                Arc::clone(&state),
                Arc::clone(&quit),
            )
            .map_err(|e| RunError::Io(format!("control.listen = {}: {e}", c.listen)))?
            .1,
        ),
    };

    let mut launched = Vec::new();
    let mut launch_error = None;
    for (w, &lcore) in config.workers.lcores.iter().enumerate() {
        let rx = ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.rx_queue(w as u16).map(|queue| RxPort {
                    iface: i as u16,
                    queue,
                })
            })
            .collect();
        let tx = ports
            .iter()
            .map(|p| {
                p.tx_queue(w as u16)
                    .expect("tx queue per worker was configured")
            })
            .collect();
        let worker = Worker::new(
            w,
            rx,
            tx,
            WorkerContext {
                burst_size: config.workers.burst,
                datapath: Arc::clone(&datapath),
                published: Arc::clone(&published),
                pool: Arc::clone(&pool),
                counters: Arc::clone(&counters),
                quit: Arc::clone(&quit),
            },
        );
        match eal.launch(lcore, move || worker.run()) {
            Ok(()) => launched.push(lcore),
            Err(e) => {
                launch_error = Some(e);
                quit.store(true, Ordering::SeqCst);
                break;
            }
        }
    }
    if launch_error.is_none() {
        info!(workers = ?config.workers.lcores, interfaces = ports.len(), "seqd ready");
        supervise(opts, &signals, &counters, &state);
    }
    quit.store(true, Ordering::SeqCst);
    for &lcore in &launched {
        let rc = eal.wait(lcore);
        if rc != 0 {
            warn!(lcore, rc, "worker returned an error");
        }
    }
    if let Some(c) = control {
        let _ = c.join();
    }
    let stats = source.collect();
    for p in ports {
        let name = p.name().to_string();
        if let Err(e) = p.close() {
            warn!(port = %name, "close: {e}");
        }
    }
    drop(pool);
    if let Some(e) = launch_error {
        return Err(e.into());
    }
    log_stats(&stats);
    if let Some(path) = &opts.stats_file {
        write_stats(path, &stats)?;
    }
    Ok(stats)
}

/// With a state directory: the last accepted version it holds (and its
/// number), or, when it is empty, the config file's tables, which seed it.
fn restore_state(config: &Config, cpus: &[u32]) -> Result<(Config, u64), RunError> {
    let Some(dir) = config.control.as_ref().and_then(|c| c.state_dir.clone()) else {
        return Ok((config.clone(), 1));
    };
    let bad = |e: String| RunError::Io(format!("control.state_dir = {}: {e}", dir.display()));
    match state::restore(&dir).map_err(|e| bad(e.to_string()))? {
        Some(p) => {
            let restored = state::config_from_persisted(config, &p, cpus)
                .and_then(|c| {
                    c.validate(cpus).map_err(|e| state::ChangeError {
                        key: e.key().to_string(),
                        value: e.value().map(str::to_string),
                        message: e.message().to_string(),
                    })?;
                    Ok(c)
                })
                .map_err(|e| {
                    bad(format!(
                        "the kept version {} does not load: {e}",
                        p.record.version
                    ))
                })?;
            info!(version = p.record.version, dir = %dir.display(), "restored the last accepted version");
            Ok((restored, p.record.version))
        }
        None => {
            let keep = config
                .control
                .as_ref()
                .map_or(state::DEFAULT_KEEP_VERSIONS, |c| c.keep_versions);
            let seed = state::VersionRecord::seed(config);
            state::persist(&dir, &state::TablesBody::persisted(config, seed), keep)
                .map_err(|e| bad(e.to_string()))?;
            Ok((config.clone(), 1))
        }
    }
}

/// Counter room for a run that starts with `config`, with space to grow.
fn first_slots(config: &Config) -> Slots {
    let service_ports = config
        .services
        .iter()
        .flat_map(|s| &s.ports)
        .map(|p| {
            if p.protocol == ProtocolConfig::Both {
                2
            } else {
                1
            }
        })
        .sum();
    let acl_rules = config.acls.iter().map(|a| a.rules.len()).sum();
    Slots::for_first_config(
        service_ports,
        config.devices.len(),
        acl_rules,
        config.acls.len(),
    )
}

/// Waits on the main lcore until a stop condition holds; applies reloads.
fn supervise(
    opts: &RunOptions,
    signals: &Signals,
    counters: &Counters,
    state: &Mutex<ControlState>,
) {
    let quit = &signals.quit;
    let start = Instant::now();
    let hz = dpdk::tsc_hz();
    let start_tsc = dpdk::rdtsc();
    while !quit.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
        if signals.reload.swap(false, Ordering::SeqCst) {
            match &opts.config_path {
                None => warn!("reload: seqd was not started from a config file"),
                Some(path) => {
                    let mut st = state.lock();
                    if let Err(e) = st.reload_file(path) {
                        error!(
                            "reload refused, still running version {}: {e}",
                            st.versions().last().map_or(0, |v| v.version)
                        );
                    }
                }
            }
        }
        if let Some(d) = opts.duration {
            if start.elapsed() >= d {
                info!("run duration reached");
                break;
            }
        }
        if let Some(idle) = opts.exit_when_idle {
            let last = counters
                .workers()
                .map(|w| w.last_rx_tsc.get())
                .max()
                .unwrap_or(0)
                .max(start_tsc);
            let idle_tsc = dpdk::rdtsc().saturating_sub(last);
            if idle_tsc as u128 * 1000 >= idle.as_millis() * hz as u128 {
                info!(
                    idle_ms = idle.as_millis() as u64,
                    "no packets received for the idle time, stopping"
                );
                break;
            }
        }
    }
}

fn write_stats(path: &Path, stats: &Stats) -> Result<(), RunError> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(stats).map_err(|e| RunError::Io(e.to_string()))?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| RunError::Io(format!("writing stats to {}: {e}", path.display())))
}

/// EAL leaves its runtime directory behind; a clean exit removes it.
fn remove_runtime_dir(prefix: &str) {
    let dir = Path::new("/var/run/dpdk").join(prefix);
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            warn!("cannot remove {}: {e}", dir.display());
        }
    }
}
