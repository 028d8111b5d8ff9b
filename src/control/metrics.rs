//! Prometheus `/metrics`: what billing scrapes. Every scrape sums the
//! per-core counters at that moment and renders them in the text format
//! (version 0.0.4).
//!
//! # Why the text is written here and not by a `prometheus::Registry`
//!
//! With 100,000 services a scrape has 400,000 service series. Building a
//! `Registry` of `IntCounterVec`s per scrape cost, per series: a hash-map
//! child (an `Arc`'d counter and its label values), then at `gather()` a
//! `proto::Metric` with one `LabelPair` per label (two `String`s each: ten
//! for a service series), a sort of the metrics by those strings, and at
//! encoding a `String` per value (`f64::to_string`). That is some fifteen
//! heap allocations per series, about six million per scrape, and most of
//! the time went there; building the `proto::MetricFamily`s directly would
//! keep the `LabelPair` strings, so it would keep most of that cost.
//!
//! So `render` writes the exposition itself into one `String` sized up
//! front: label values are borrowed from the [`Stats`] snapshot (or, for IP
//! addresses, ports and priorities, formatted once into one shared text
//! buffer), rows are sorted as plain `&str` arrays, and numbers are written
//! from a stack buffer. Per series nothing is allocated; per family, one
//! `Vec` of rows. The output is the one the registry produced, byte for
//! byte (the tests compare the two): the same names, help, types, label
//! names in alphabetical order, label values escaped as the text format
//! wants (`\\`, `\"`, `\n`), families ordered by name (empty ones left out),
//! series ordered by their label values, and values printed as the `f64`
//! the crate would print. Only the histogram of publication times still goes
//! through the crate: it is one small family.
//!
//! One deliberate difference: the crate finds a series by a hash of its
//! label values concatenated without a separator, so two services such as
//! `x` on 12.3.4.5 and `x1` on 2.3.4.5 (same port) were counted as one
//! series under the first one's labels. Here they stay two series.

use prometheus::core::Collector;
use prometheus::{Histogram, TextEncoder};

use crate::runtime::Stats;

/// Counters up to 2^53 are exact as `f64`; above, the crate's value (the
/// `u64` rounded to `f64`) is printed as the crate printed it.
const F64_EXACT: u64 = 1 << 53;

/// A metric family: its header, whether it has any series, and how to
/// write them.
struct Family<'a> {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    empty: bool,
    samples: Box<dyn Fn(&mut Text) + 'a>,
}

impl<'a> Family<'a> {
    fn new(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        empty: bool,
        samples: impl Fn(&mut Text) + 'a,
    ) -> Self {
        Family {
            name,
            help,
            kind,
            empty,
            samples: Box::new(samples),
        }
    }
}

/// The exposition being written.
struct Text {
    out: String,
}

impl Text {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        if !help.is_empty() {
            self.out.push_str("# HELP ");
            self.out.push_str(name);
            self.out.push(' ');
            push_escaped(&mut self.out, help, false);
            self.out.push('\n');
        }
        self.out.push_str("# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    /// `name{label="value",...} ` — the labels in alphabetical order of
    /// their names.
    fn series(&mut self, name: &str, labels: &[(&str, &str)]) {
        debug_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0));
        self.out.push_str(name);
        let mut sep = '{';
        for (label, value) in labels {
            self.out.push(sep);
            self.out.push_str(label);
            self.out.push_str("=\"");
            push_escaped(&mut self.out, value, true);
            self.out.push('"');
            sep = ',';
        }
        if !labels.is_empty() {
            self.out.push('}');
        }
        self.out.push(' ');
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.series(name, labels);
        push_u64(&mut self.out, value);
        self.out.push('\n');
    }

    fn gauge(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series(name, labels);
        push_f64(&mut self.out, value);
        self.out.push('\n');
    }
}

/// Appends `v` escaped for the text format: `\` and newline always, `"`
/// in label values (`quote`), as the crate's encoder does.
fn push_escaped(out: &mut String, v: &str, quote: bool) {
    let mut start = 0;
    for (i, b) in v.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'"' if quote => "\\\"",
            _ => continue,
        };
        // `i` is an ASCII byte, so a char boundary.
        out.push_str(&v[start..i]);
        out.push_str(escaped);
        start = i + 1;
    }
    out.push_str(&v[start..]);
}

/// Appends a counter's value as the crate prints it: `(v as f64).to_string()`.
fn push_u64(out: &mut String, v: u64) {
    if v > F64_EXACT {
        push_f64(out, v as f64);
        return;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

fn push_f64(out: &mut String, v: f64) {
    use std::fmt::Write;
    write!(out, "{v}").expect("writing to a String");
}

/// Short label values (IP addresses, ports, priorities) formatted once
/// into one buffer; rows borrow them from it.
#[derive(Default)]
struct Strings {
    text: String,
    ends: Vec<usize>,
}

impl Strings {
    fn push(&mut self, v: impl std::fmt::Display) {
        use std::fmt::Write;
        write!(self.text, "{v}").expect("writing to a String");
        self.ends.push(self.text.len());
    }

    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

/// Label values (in alphabetical order of the label names) and the
/// counters of one row.
struct Row<'a, const L: usize, const V: usize> {
    labels: [&'a str; L],
    values: [u64; V],
}

/// Sorts rows by their label values, as the registry orders series, and
/// merges rows with equal labels by adding their counters, as
/// `with_label_values(..).inc_by(..)` on one registry did.
fn sort_merge<const L: usize, const V: usize>(rows: &mut Vec<Row<'_, L, V>>) {
    rows.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    rows.dedup_by(|later, kept| {
        if later.labels != kept.labels {
            return false;
        }
        for (k, v) in kept.values.iter_mut().zip(later.values) {
            *k = k.wrapping_add(v);
        }
        true
    });
}

/// Gauge rows sorted by their label value; of equal labels the last one
/// set wins, as `GaugeVec::with_label_values(..).set(..)` did.
fn sort_last_wins(mut rows: Vec<(String, f64)>) -> Vec<(String, f64)> {
    // Stable: equal labels keep their order, and dedup keeps the first.
    rows.reverse();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.dedup_by(|later, kept| later.0 == kept.0);
    rows
}

/// The Prometheus text exposition of `stats`.
pub fn render(stats: &Stats, publish_seconds: &Histogram) -> String {
    const SVC_PACKETS: &str = "seqd_service_packets_total";
    const SVC_BYTES: &str = "seqd_service_bytes_total";

    // Services: [ip, port, protocol, service]; direction, the first label,
    // is written per pass: every "in" series, then every "out" series.
    let mut svc_text = Strings::default();
    for s in &stats.services {
        svc_text.push(s.ip);
        svc_text.push(s.port);
    }
    let mut services: Vec<Row<4, 4>> = stats
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| Row {
            labels: [
                svc_text.get(2 * i),
                svc_text.get(2 * i + 1),
                &s.protocol,
                &s.service,
            ],
            values: [s.packets_in, s.bytes_in, s.packets_out, s.bytes_out],
        })
        .collect();
    sort_merge(&mut services);
    let services = &services;
    let service_family = |name: &'static str, help: &'static str, packets: bool| {
        Family::new(name, help, "counter", services.is_empty(), move |t| {
            for (dir, v) in [("in", 0), ("out", 2)] {
                let v = if packets { v } else { v + 1 };
                for r in services {
                    let [ip, port, protocol, service] = r.labels;
                    t.counter(
                        name,
                        &[
                            ("direction", dir),
                            ("ip", ip),
                            ("port", port),
                            ("protocol", protocol),
                            ("service", service),
                        ],
                        r.values[v],
                    );
                }
            }
        })
    };

    // Devices: [device]; direction ("from" < "to") follows.
    let mut devices: Vec<Row<1, 4>> = stats
        .devices
        .iter()
        .map(|d| Row {
            labels: [d.name.as_str()],
            values: [d.packets_to, d.bytes_to, d.packets_from, d.bytes_from],
        })
        .collect();
    sort_merge(&mut devices);
    let devices = &devices;
    let device_family = |name: &'static str, help: &'static str, packets: bool| {
        Family::new(name, help, "counter", devices.is_empty(), move |t| {
            for r in devices {
                for (dir, v) in [("from", 2), ("to", 0)] {
                    let v = if packets { v } else { v + 1 };
                    t.counter(
                        name,
                        &[("device", r.labels[0]), ("direction", dir)],
                        r.values[v],
                    );
                }
            }
        })
    };

    // ACL rules: [action, interface, priority, service].
    let mut prio_text = Strings::default();
    for r in &stats.acl_rules {
        prio_text.push(r.priority);
    }
    let mut rules: Vec<Row<4, 2>> = stats
        .acl_rules
        .iter()
        .enumerate()
        .map(|(i, r)| Row {
            labels: [
                r.action,
                &r.interface,
                prio_text.get(i),
                r.service.as_deref().unwrap_or(""),
            ],
            values: [r.packets, r.bytes],
        })
        .collect();
    sort_merge(&mut rules);
    // ACL defaults: [action, interface, service].
    let mut defaults: Vec<Row<3, 2>> = stats
        .acl_defaults
        .iter()
        .map(|d| Row {
            labels: [d.action, &d.interface, d.service.as_deref().unwrap_or("")],
            values: [d.packets, d.bytes],
        })
        .collect();
    sort_merge(&mut defaults);
    // ACL clients: [client, interface, service].
    let mut client_text = Strings::default();
    for c in &stats.acl_clients {
        client_text.push(c.client);
    }
    let mut clients: Vec<Row<3, 2>> = stats
        .acl_clients
        .iter()
        .enumerate()
        .map(|(i, c)| Row {
            labels: [
                client_text.get(i),
                &c.interface,
                c.service.as_deref().unwrap_or(""),
            ],
            values: [c.packets, c.bytes],
        })
        .collect();
    sort_merge(&mut clients);
    fn acl_family<'r, const L: usize>(
        name: &'static str,
        help: &'static str,
        label_names: [&'static str; L],
        rows: &'r [Row<'r, L, 2>],
        v: usize,
    ) -> Family<'r> {
        Family::new(name, help, "counter", rows.is_empty(), move |t| {
            for r in rows {
                let mut labels = [("", ""); L];
                for (l, (n, value)) in labels.iter_mut().zip(label_names.iter().zip(r.labels)) {
                    *l = (*n, value);
                }
                t.counter(name, &labels, r.values[v]);
            }
        })
    }
    const RULE: [&str; 4] = ["action", "interface", "priority", "service"];
    const DEFAULT: [&str; 3] = ["action", "interface", "service"];
    const CLIENT: [&str; 3] = ["client", "interface", "service"];

    // Ports: [interface]; eight counters each, and the link gauge.
    let mut ports: Vec<Row<1, 8>> = stats
        .interfaces
        .iter()
        .map(|i| Row {
            labels: [i.name.as_str()],
            values: [
                i.port.rx_packets,
                i.port.tx_packets,
                i.port.rx_bytes,
                i.port.tx_bytes,
                i.port.rx_missed,
                i.port.rx_errors,
                i.port.tx_errors,
                i.port.rx_nombuf,
            ],
        })
        .collect();
    sort_merge(&mut ports);
    let ports = &ports;
    let port_family = |name: &'static str, help: &'static str, v: usize| {
        Family::new(name, help, "counter", ports.is_empty(), move |t| {
            for r in ports {
                t.counter(name, &[("interface", r.labels[0])], r.values[v]);
            }
        })
    };
    let gauge_family =
        |name: &'static str, help: &'static str, label: &'static str, rows: Vec<(String, f64)>| {
            let rows = sort_last_wins(rows);
            Family::new(name, help, "gauge", rows.is_empty(), move |t| {
                for (l, v) in &rows {
                    t.gauge(name, &[(label, l)], *v);
                }
            })
        };
    let link = stats
        .interfaces
        .iter()
        .map(|i| {
            let up = i.link.map_or(0.0, |l| if l.up { 1.0 } else { 0.0 });
            (i.name.clone(), up)
        })
        .collect();
    let busy = stats
        .workers
        .iter()
        .map(|w| {
            let ratio = w.busy_cycles as f64 / w.total_cycles.max(1) as f64;
            (w.lcore.to_string(), ratio)
        })
        .collect();
    let running = stats
        .workers
        .iter()
        .map(|w| (w.lcore.to_string(), w.table_version as f64))
        .collect();

    let mut families = vec![
        service_family(
            SVC_PACKETS,
            "Packets of a service port, from clients (in) and to clients (out).",
            true,
        ),
        service_family(
            SVC_BYTES,
            "Ethernet bytes of a service port, from clients (in) and to clients (out).",
            false,
        ),
        device_family(
            "seqd_device_packets_total",
            "Packets seqd sent to a device (to) and steered from it (from).",
            true,
        ),
        device_family(
            "seqd_device_bytes_total",
            "Bytes seqd sent to a device (to) and steered from it (from).",
            false,
        ),
        acl_family(
            "seqd_acl_rule_packets_total",
            "Packets an ACL rule decided.",
            RULE,
            &rules,
            0,
        ),
        acl_family(
            "seqd_acl_rule_bytes_total",
            "Bytes an ACL rule decided.",
            RULE,
            &rules,
            1,
        ),
        acl_family(
            "seqd_acl_default_packets_total",
            "Packets an ACL rule set's default action decided.",
            DEFAULT,
            &defaults,
            0,
        ),
        acl_family(
            "seqd_acl_default_bytes_total",
            "Bytes an ACL rule set's default action decided.",
            DEFAULT,
            &defaults,
            1,
        ),
        acl_family(
            "seqd_acl_client_packets_total",
            "Packets of a client host named by a /32 ACL rule.",
            CLIENT,
            &clients,
            0,
        ),
        acl_family(
            "seqd_acl_client_bytes_total",
            "Bytes of a client host named by a /32 ACL rule.",
            CLIENT,
            &clients,
            1,
        ),
        Family::new(
            "seqd_drops_total",
            "Packets dropped, by reason.",
            "counter",
            stats.drops.is_empty(),
            |t| {
                // A BTreeMap of &str: already in label order.
                for (reason, n) in &stats.drops {
                    t.counter("seqd_drops_total", &[("reason", reason)], *n);
                }
            },
        ),
        port_family(
            "seqd_port_rx_packets_total",
            "Packets the port received.",
            0,
        ),
        port_family("seqd_port_tx_packets_total", "Packets the port sent.", 1),
        port_family("seqd_port_rx_bytes_total", "Bytes the port received.", 2),
        port_family("seqd_port_tx_bytes_total", "Bytes the port sent.", 3),
        port_family(
            "seqd_port_rx_missed_total",
            "Packets the NIC dropped for lack of rx descriptors.",
            4,
        ),
        port_family(
            "seqd_port_rx_errors_total",
            "Erroneous received packets.",
            5,
        ),
        port_family("seqd_port_tx_errors_total", "Failed transmissions.", 6),
        port_family(
            "seqd_port_rx_nombuf_total",
            "Rx failures for lack of mbufs.",
            7,
        ),
        gauge_family(
            "seqd_port_link_up",
            "1 when the port's link is up.",
            "interface",
            link,
        ),
        gauge_family(
            "seqd_worker_busy_ratio",
            "Share of a worker's cycles spent on bursts that carried packets.",
            "lcore",
            busy,
        ),
        gauge_family(
            "seqd_worker_table_version",
            "The table version a worker runs.",
            "lcore",
            running,
        ),
        Family::new(
            "seqd_table_version",
            "The table version last published.",
            "gauge",
            false,
            |t| {
                // An IntGauge: i64, read back as f64.
                t.gauge("seqd_table_version", &[], stats.table_version as i64 as f64)
            },
        ),
        Family::new(
            "seqd_tsc_hz",
            "TSC ticks per second of this machine.",
            "gauge",
            false,
            |t| t.gauge("seqd_tsc_hz", &[], stats.tsc_hz as f64),
        ),
    ];
    families.sort_by_key(|f| f.name);

    // About 110 bytes per service series; the rest is small.
    let mut text = Text {
        out: String::with_capacity(stats.services.len() * 4 * 128 + (64 << 10)),
    };
    let publish = publish_seconds.collect();
    let publish_name = publish_seconds.desc()[0].fq_name.as_str();
    let mut publish_done = false;
    for f in families.iter().filter(|f| !f.empty) {
        if !publish_done && publish_name < f.name {
            encode_crate_families(&publish, &mut text.out);
            publish_done = true;
        }
        text.header(f.name, f.help, f.kind);
        (f.samples)(&mut text);
    }
    if !publish_done {
        encode_crate_families(&publish, &mut text.out);
    }
    text.out
}

/// Families the crate collects itself (the publication histogram).
fn encode_crate_families(families: &[prometheus::proto::MetricFamily], out: &mut String) {
    TextEncoder::new()
        .encode_utf8(families, out)
        .expect("text encoding");
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::datapath::dpdk::{LinkStatus, PortStats};
    use crate::runtime::{
        AclClientStats, AclDefaultStats, AclRuleStats, DeviceStats, InterfaceStats, ServiceStats,
        WorkerStats,
    };

    /// The renderer this module replaced (a `Registry` of `*Vec`s built per
    /// scrape), kept as the reference the new one must match byte for byte.
    mod registry {
        use prometheus::{
            Encoder, Gauge, GaugeVec, Histogram, IntCounterVec, IntGauge, Opts, Registry,
            TextEncoder,
        };

        use crate::datapath::dpdk::PortStats;
        use crate::runtime::Stats;

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
            let tsc = Gauge::new("seqd_tsc_hz", "TSC ticks per second of this machine.")
                .expect("valid metric");
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
    }

    fn empty_stats() -> Stats {
        Stats {
            tsc_hz: 2_600_000_000,
            table_version: 3,
            interfaces: Vec::new(),
            workers: Vec::new(),
            services: Vec::new(),
            devices: Vec::new(),
            acl_rules: Vec::new(),
            acl_defaults: Vec::new(),
            acl_clients: Vec::new(),
            drops: BTreeMap::new(),
        }
    }

    fn service(name: &str, ip: [u8; 4], protocol: &str, port: u16, v: [u64; 4]) -> ServiceStats {
        ServiceStats {
            service: name.to_string(),
            ip: Ipv4Addr::from(ip),
            protocol: protocol.to_string(),
            port,
            packets_in: v[0],
            bytes_in: v[1],
            packets_out: v[2],
            bytes_out: v[3],
        }
    }

    /// The lines of `text` that are samples of `metric` (not its header).
    fn samples<'t>(text: &'t str, metric: &str) -> Vec<&'t str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(metric)
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
            .collect()
    }

    #[test]
    fn service_packets_and_bytes_are_exact_lines() {
        let mut stats = empty_stats();
        stats.services = vec![
            service("acme", [203, 0, 113, 10], "tcp", 80, [2, 131, 1, 71]),
            service(
                "beta",
                [203, 0, 113, 9],
                "udp",
                53,
                [0, 0, 7, 9_000_000_000],
            ),
        ];
        let text = render(&stats, &publish_histogram());
        // Written by hand: labels in alphabetical order, every "in" series
        // before every "out" one, then by IP address as text ("...10" <
        // "...9").
        assert!(text.contains(
            "# HELP seqd_service_packets_total Packets of a service port, from clients (in) and to clients (out).\n\
             # TYPE seqd_service_packets_total counter\n"
        ));
        assert!(text.contains(
            "# HELP seqd_service_bytes_total Ethernet bytes of a service port, from clients (in) and to clients (out).\n\
             # TYPE seqd_service_bytes_total counter\n"
        ));
        assert_eq!(
            samples(&text, "seqd_service_packets_total"),
            [
                r#"seqd_service_packets_total{direction="in",ip="203.0.113.10",port="80",protocol="tcp",service="acme"} 2"#,
                r#"seqd_service_packets_total{direction="in",ip="203.0.113.9",port="53",protocol="udp",service="beta"} 0"#,
                r#"seqd_service_packets_total{direction="out",ip="203.0.113.10",port="80",protocol="tcp",service="acme"} 1"#,
                r#"seqd_service_packets_total{direction="out",ip="203.0.113.9",port="53",protocol="udp",service="beta"} 7"#,
            ]
        );
        assert_eq!(
            samples(&text, "seqd_service_bytes_total"),
            [
                r#"seqd_service_bytes_total{direction="in",ip="203.0.113.10",port="80",protocol="tcp",service="acme"} 131"#,
                r#"seqd_service_bytes_total{direction="in",ip="203.0.113.9",port="53",protocol="udp",service="beta"} 0"#,
                r#"seqd_service_bytes_total{direction="out",ip="203.0.113.10",port="80",protocol="tcp",service="acme"} 71"#,
                r#"seqd_service_bytes_total{direction="out",ip="203.0.113.9",port="53",protocol="udp",service="beta"} 9000000000"#,
            ]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut stats = empty_stats();
        stats.services = vec![service(
            "a\"b\\c\nd é",
            [10, 0, 0, 1],
            "tcp",
            443,
            [5, 0, 0, 0],
        )];
        let text = render(&stats, &publish_histogram());
        assert_eq!(
            samples(&text, "seqd_service_packets_total")[0],
            r#"seqd_service_packets_total{direction="in",ip="10.0.0.1",port="443",protocol="tcp",service="a\"b\\c\nd é"} 5"#
        );
    }

    #[test]
    fn counters_print_as_the_f64_prometheus_reads() {
        let mut out = String::new();
        for v in [0, 7, 1 << 53, (1 << 53) + 1, u64::MAX] {
            push_u64(&mut out, v);
            out.push(' ');
        }
        // 2^53 + 1 and 2^64 - 1 are not f64s: they print rounded, as the
        // registry printed them.
        assert_eq!(
            out,
            "0 7 9007199254740992 9007199254740992 18446744073709552000 "
        );
    }

    /// Two services whose label values concatenate to the same string were
    /// one series in the registry (it hashes the concatenation); they are
    /// two here.
    #[test]
    fn services_with_colliding_label_text_stay_apart() {
        let mut stats = empty_stats();
        stats.services = vec![
            service("x", [12, 3, 4, 5], "tcp", 80, [1, 0, 0, 0]),
            service("x1", [2, 3, 4, 5], "tcp", 80, [10, 0, 0, 0]),
        ];
        let text = render(&stats, &publish_histogram());
        let lines = samples(&text, "seqd_service_packets_total");
        assert_eq!(
            &lines[..2],
            [
                r#"seqd_service_packets_total{direction="in",ip="12.3.4.5",port="80",protocol="tcp",service="x"} 1"#,
                r#"seqd_service_packets_total{direction="in",ip="2.3.4.5",port="80",protocol="tcp",service="x1"} 10"#,
            ]
        );
    }

    #[test]
    fn empty_families_are_left_out() {
        let text = render(&empty_stats(), &publish_histogram());
        assert!(!text.contains("seqd_service_packets_total"));
        assert!(!text.contains("seqd_port_link_up"));
        assert!(text.contains("# TYPE seqd_table_publish_seconds histogram\n"));
        assert!(text.contains("\nseqd_table_version 3\n"));
        assert_eq!(text, registry::render(&empty_stats(), &publish_histogram()));
    }

    const NAMES: [&str; 8] = ["a", "b", "ab", "", "x\"y", "back\\slash", "new\nline", "é"];
    const ACTIONS: [&str; 2] = ["allow", "deny"];
    const DROPS: [&str; 4] = ["acl_deny", "no_service", "truncated", "tx_full"];

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(&NAMES[..]).prop_map(str::to_string)
    }

    fn count() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..1000u64,
            any::<u64>().prop_map(|v| v >> 8),
            Just(u64::MAX)
        ]
    }

    prop_compose! {
        fn arb_stats()(
            services in prop::collection::vec(
                (name(), any::<[u8; 4]>(), prop::sample::select(vec!["tcp", "udp"]),
                 prop_oneof![Just(80u16), any::<u16>()], any::<[u64; 4]>()),
                0..12),
            devices in prop::collection::vec((name(), any::<[u64; 4]>()), 0..6),
            rules in prop::collection::vec(
                (name(), prop::option::of(name()), 0..30u32, 0..2usize, count(), count()),
                0..8),
            defaults in prop::collection::vec(
                (name(), prop::option::of(name()), 0..2usize, count(), count()), 0..4),
            clients in prop::collection::vec(
                (name(), prop::option::of(name()), any::<[u8; 4]>(), count(), count()), 0..4),
            interfaces in prop::collection::vec(
                (name(), any::<[u64; 8]>(), prop::option::of(any::<bool>())), 0..3),
            workers in prop::collection::vec((0..16u32, count(), count(), 0..9u64), 0..3),
            drops in prop::collection::btree_map(prop::sample::select(&DROPS[..]), count(), 0..4),
            table_version in any::<u64>(),
        ) -> Stats {
            Stats {
                tsc_hz: 2_600_000_000,
                table_version,
                interfaces: interfaces.into_iter().map(|(name, p, link)| InterfaceStats {
                    name,
                    device: "net_pcap0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    ipv4: Ipv4Addr::new(10, 0, 0, 1),
                    port: PortStats {
                        rx_packets: p[0], tx_packets: p[1], rx_bytes: p[2], tx_bytes: p[3],
                        rx_missed: p[4], rx_errors: p[5], tx_errors: p[6], rx_nombuf: p[7],
                    },
                    link: link.map(|up| LinkStatus { up, speed_mbps: 10_000, full_duplex: true }),
                }).collect(),
                workers: workers.into_iter().map(|(lcore, busy, total, v)| WorkerStats {
                    lcore, rx_packets: 0, rx_bytes: 0, tx_packets: 0, arp_replies: 0,
                    arp_requests: 0, arp_learned: 0, busy_cycles: busy, total_cycles: total, work_cycles: 0,
                    table_version: v,
                }).collect(),
                services: services.into_iter().map(|(n, ip, proto, port, v)| {
                    service(&n, ip, proto, port, v)
                }).collect(),
                devices: devices.into_iter().map(|(name, v)| DeviceStats {
                    name, packets_to: v[0], bytes_to: v[1], packets_from: v[2], bytes_from: v[3],
                }).collect(),
                acl_rules: rules.into_iter().enumerate().map(
                    |(id, (interface, service, priority, a, packets, bytes))| AclRuleStats {
                        id: id as u32, interface, service, priority, action: ACTIONS[a],
                        client: None, packets, bytes,
                    }).collect(),
                acl_defaults: defaults.into_iter().map(
                    |(interface, service, a, packets, bytes)| AclDefaultStats {
                        interface, service, action: ACTIONS[a], packets, bytes,
                    }).collect(),
                acl_clients: clients.into_iter().map(
                    |(interface, service, c, packets, bytes)| AclClientStats {
                        interface, service, client: Ipv4Addr::from(c), packets, bytes,
                    }).collect(),
                drops,
            }
        }
    }

    /// Whether, in every family, two different label sets have different
    /// concatenations (the registry would merge them: see the module doc).
    fn registry_keys_distinct(s: &Stats) -> bool {
        fn distinct(keys: Vec<Vec<String>>) -> bool {
            let mut by_text: BTreeMap<String, Vec<String>> = BTreeMap::new();
            keys.into_iter()
                .all(|k| by_text.entry(k.concat()).or_insert_with(|| k.clone()) == &k)
        }
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        distinct(
            s.services
                .iter()
                .map(|x| {
                    vec![
                        x.service.clone(),
                        x.ip.to_string(),
                        x.protocol.clone(),
                        x.port.to_string(),
                    ]
                })
                .collect(),
        ) && distinct(
            s.acl_rules
                .iter()
                .map(|r| {
                    vec![
                        r.interface.clone(),
                        opt(&r.service),
                        r.priority.to_string(),
                        r.action.to_string(),
                    ]
                })
                .collect(),
        ) && distinct(
            s.acl_defaults
                .iter()
                .map(|d| vec![d.interface.clone(), opt(&d.service), d.action.to_string()])
                .collect(),
        ) && distinct(
            s.acl_clients
                .iter()
                .map(|c| vec![c.interface.clone(), opt(&c.service), c.client.to_string()])
                .collect(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Names, help, types, labels, order and values: the same text as
        /// the registry renderer, including label values that need
        /// escaping, equal label sets (summed) and empty families.
        #[test]
        fn same_text_as_the_registry(stats in arb_stats(), observations in prop::collection::vec(0.0..10.0f64, 0..4)) {
            prop_assume!(registry_keys_distinct(&stats));
            let h = publish_histogram();
            for o in observations {
                h.observe(o);
            }
            prop_assert_eq!(render(&stats, &h), registry::render(&stats, &h));
        }
    }

    /// What a scrape of 100,000 services costs in-process, old and new
    /// (the `ip` labels make every series distinct):
    /// `cargo test --release --lib render_100k -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn render_100k_services_timing() {
        let mut stats = empty_stats();
        stats.services = (0..100_000u32)
            .map(|i| {
                let ip = (u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i).to_be_bytes();
                let n = u64::from(i);
                service(
                    &format!("svc-{i:05}"),
                    ip,
                    "tcp",
                    80,
                    [n, n * 64, n, n * 64],
                )
            })
            .collect();
        let h = publish_histogram();
        let time = |f: &dyn Fn() -> String| {
            let mut runs: Vec<(std::time::Duration, usize)> = (0..5)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let len = f().len();
                    (t.elapsed(), len)
                })
                .collect();
            runs.sort();
            runs[2]
        };
        let (new, new_len) = time(&|| render(&stats, &h));
        let (old, old_len) = time(&|| registry::render(&stats, &h));
        println!(
            "registry: {old:?} ({old_len} bytes); direct: {new:?} ({new_len} bytes); median of 5"
        );
        assert_eq!(render(&stats, &h), registry::render(&stats, &h));
    }
}
