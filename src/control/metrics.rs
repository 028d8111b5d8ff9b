//! Prometheus `/metrics`: what billing scrapes. Every scrape sums the
//! per-core counters at that moment and renders them in the text format.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::datapath::dpdk::PortStats;
use crate::runtime::Stats;

/// A port statistic: metric name, help, and how to read it.
type PortCounter = (&'static str, &'static str, fn(&PortStats) -> u64);

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// The Prometheus text exposition of `stats`.
pub fn render(stats: &Stats, publish_seconds: &Histogram) -> String {
    let reg = Registry::new();
    let svc_packets = counter(
        &reg,
        "seqd_service_packets_total",
        "Packets of a service port, from clients (in) and to clients (out).",
        &["service", "ip", "protocol", "port", "direction"],
    );
    let svc_bytes = counter(
        &reg,
        "seqd_service_bytes_total",
        "Ethernet bytes of a service port, from clients (in) and to clients (out).",
        &["service", "ip", "protocol", "port", "direction"],
    );
    for s in &stats.services {
        let ip = s.ip.to_string();
        let port = s.port.to_string();
        for (dir, p, b) in [
            ("in", s.packets_in, s.bytes_in),
            ("out", s.packets_out, s.bytes_out),
        ] {
            let l = [s.service.as_str(), &ip, &s.protocol, &port, dir];
            svc_packets.with_label_values(&l).inc_by(p);
            svc_bytes.with_label_values(&l).inc_by(b);
        }
    }
    let dev_packets = counter(
        &reg,
        "seqd_device_packets_total",
        "Packets seqd sent to a device (to) and steered from it (from).",
        &["device", "direction"],
    );
    let dev_bytes = counter(
        &reg,
        "seqd_device_bytes_total",
        "Bytes seqd sent to a device (to) and steered from it (from).",
        &["device", "direction"],
    );
    for d in &stats.devices {
        for (dir, p, b) in [
            ("to", d.packets_to, d.bytes_to),
            ("from", d.packets_from, d.bytes_from),
        ] {
            dev_packets.with_label_values(&[&d.name, dir]).inc_by(p);
            dev_bytes.with_label_values(&[&d.name, dir]).inc_by(b);
        }
    }
    let rule_labels = ["interface", "service", "priority", "action"];
    let acl_packets = counter(
        &reg,
        "seqd_acl_rule_packets_total",
        "Packets an ACL rule decided.",
        &rule_labels,
    );
    let acl_bytes = counter(
        &reg,
        "seqd_acl_rule_bytes_total",
        "Bytes an ACL rule decided.",
        &rule_labels,
    );
    for r in &stats.acl_rules {
        let prio = r.priority.to_string();
        let l = [
            r.interface.as_str(),
            r.service.as_deref().unwrap_or(""),
            &prio,
            r.action,
        ];
        acl_packets.with_label_values(&l).inc_by(r.packets);
        acl_bytes.with_label_values(&l).inc_by(r.bytes);
    }
    let def_labels = ["interface", "service", "action"];
    let def_packets = counter(
        &reg,
        "seqd_acl_default_packets_total",
        "Packets an ACL rule set's default action decided.",
        &def_labels,
    );
    let def_bytes = counter(
        &reg,
        "seqd_acl_default_bytes_total",
        "Bytes an ACL rule set's default action decided.",
        &def_labels,
    );
    for d in &stats.acl_defaults {
        let l = [
            d.interface.as_str(),
            d.service.as_deref().unwrap_or(""),
            d.action,
        ];
        def_packets.with_label_values(&l).inc_by(d.packets);
        def_bytes.with_label_values(&l).inc_by(d.bytes);
    }
    let cl_labels = ["interface", "service", "client"];
    let cl_packets = counter(
        &reg,
        "seqd_acl_client_packets_total",
        "Packets of a client host named by a /32 ACL rule.",
        &cl_labels,
    );
    let cl_bytes = counter(
        &reg,
        "seqd_acl_client_bytes_total",
        "Bytes of a client host named by a /32 ACL rule.",
        &cl_labels,
    );
    for c in &stats.acl_clients {
        let client = c.client.to_string();
        let l = [
            c.interface.as_str(),
            c.service.as_deref().unwrap_or(""),
            &client,
        ];
        cl_packets.with_label_values(&l).inc_by(c.packets);
        cl_bytes.with_label_values(&l).inc_by(c.bytes);
    }
    let drops = counter(
        &reg,
        "seqd_drops_total",
        "Packets dropped, by reason.",
        &["reason"],
    );
    for (reason, n) in &stats.drops {
        drops.with_label_values(&[reason]).inc_by(*n);
    }
    let port_counters: [PortCounter; 8] = [
        (
            "seqd_port_rx_packets_total",
            "Packets the port received.",
            |p| p.rx_packets,
        ),
        (
            "seqd_port_tx_packets_total",
            "Packets the port sent.",
            |p| p.tx_packets,
        ),
        (
            "seqd_port_rx_bytes_total",
            "Bytes the port received.",
            |p| p.rx_bytes,
        ),
        ("seqd_port_tx_bytes_total", "Bytes the port sent.", |p| {
            p.tx_bytes
        }),
        (
            "seqd_port_rx_missed_total",
            "Packets the NIC dropped for lack of rx descriptors.",
            |p| p.rx_missed,
        ),
        (
            "seqd_port_rx_errors_total",
            "Erroneous received packets.",
            |p| p.rx_errors,
        ),
        ("seqd_port_tx_errors_total", "Failed transmissions.", |p| {
            p.tx_errors
        }),
        (
            "seqd_port_rx_nombuf_total",
            "Rx failures for lack of mbufs.",
            |p| p.rx_nombuf,
        ),
    ];
    for (name, help, get) in port_counters {
        let c = counter(&reg, name, help, &["interface"]);
        for i in &stats.interfaces {
            c.with_label_values(&[&i.name]).inc_by(get(&i.port));
        }
    }
    let link = GaugeVec::new(
        Opts::new("seqd_port_link_up", "1 when the port's link is up."),
        &["interface"],
    )
    .expect("valid metric");
    reg.register(Box::new(link.clone())).expect("unique metric");
    for i in &stats.interfaces {
        link.with_label_values(&[&i.name])
            .set(i.link.map_or(0.0, |l| if l.up { 1.0 } else { 0.0 }));
    }
    let busy = GaugeVec::new(
        Opts::new(
            "seqd_worker_busy_ratio",
            "Share of a worker's cycles spent on bursts that carried packets.",
        ),
        &["lcore"],
    )
    .expect("valid metric");
    reg.register(Box::new(busy.clone())).expect("unique metric");
    for w in &stats.workers {
        busy.with_label_values(&[&w.lcore.to_string()])
            .set(w.busy_cycles as f64 / w.total_cycles.max(1) as f64);
    }
    let running = GaugeVec::new(
        Opts::new(
            "seqd_worker_table_version",
            "The table version a worker runs.",
        ),
        &["lcore"],
    )
    .expect("valid metric");
    reg.register(Box::new(running.clone()))
        .expect("unique metric");
    for w in &stats.workers {
        running
            .with_label_values(&[&w.lcore.to_string()])
            .set(w.table_version as f64);
    }
    let version = IntGauge::new("seqd_table_version", "The table version last published.")
        .expect("valid metric");
    reg.register(Box::new(version.clone()))
        .expect("unique metric");
    version.set(stats.table_version as i64);
    let tsc =
        Gauge::new("seqd_tsc_hz", "TSC ticks per second of this machine.").expect("valid metric");
    reg.register(Box::new(tsc.clone())).expect("unique metric");
    tsc.set(stats.tsc_hz as f64);
    reg.register(Box::new(publish_seconds.clone()))
        .expect("unique metric");

    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut out)
        .expect("text encoding");
    String::from_utf8(out).expect("prometheus text is UTF-8")
}

/// The histogram of update publication times the control side observes.
pub fn publish_histogram() -> Histogram {
    Histogram::with_opts(
        prometheus::HistogramOpts::new(
            "seqd_table_publish_seconds",
            "Time to compile an accepted update and publish it to every worker.",
        )
        .buckets(vec![
            0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
        ]),
    )
    .expect("valid histogram")
}
