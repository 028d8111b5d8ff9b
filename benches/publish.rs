//! Time to compile and publish a whole table: the control plane's work for
//! a full replacement (`PUT /v1/tables`, SIGHUP), without the HTTP and JSON
//! around it.
//!
//! For each N (default 100,000 and 1,000,000 service ports), writes the
//! benchmark config with `scripts/gen-traffic.py` (N/2 service IPs, 64
//! devices, 10 ACL rules per service IP), parses it (timed apart: it is the
//! TOML/JSON front end), then times `services::compile_all` (services,
//! sequences and ACLs into `Tables`) and `Published::publish` (one copy per
//! worker, then the version bump workers watch), five times, and prints the
//! median and the table bytes per service port.
//!
//! Run: `cargo bench --bench publish` (PUBLISH_SERVICES="100000" to choose
//! N, PUBLISH_WORKERS for the number of worker copies, default 1).

use std::process::Command;
use std::time::Instant;

use seqd::control::config::Config;
use seqd::control::services;
use seqd::control::slots::Slots;
use seqd::datapath::tables::Published;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    // cargo bench passes --bench; nothing else is taken.
    let sizes: Vec<usize> = std::env::var("PUBLISH_SERVICES")
        .ok()
        .map(|v| {
            v.split_whitespace()
                .map(|n| n.parse().expect("PUBLISH_SERVICES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    let workers: usize = std::env::var("PUBLISH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    println!("compile + publish of a whole table, {workers} worker copies; median of 5");
    println!(
        "{:>9}  {:>10}  {:>10}  {:>10}  {:>10}  {:>16}  {:>9}",
        "services", "parse s", "compile s", "publish s", "total s", "table B/service", "RSS MiB"
    );
    for n in sizes {
        let dir = format!("/tmp/seqd-publish-{n}");
        let st = Command::new("python3")
            .args([
                "scripts/gen-traffic.py",
                "--services",
                &n.to_string(),
                "--packets",
                "20",
                "--out",
                &dir,
            ])
            .output()
            .expect("python3 scripts/gen-traffic.py");
        assert!(
            st.status.success(),
            "gen-traffic: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let rss_start = rss_mib();
        let text = std::fs::read_to_string(format!("{dir}/seqd.toml")).unwrap();
        let rss_text = rss_mib();
        // The TOML front end alone (the toml crate and serde), then our
        // validation (which compiles the tables once), timed apart.
        let t0 = Instant::now();
        let config: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let toml_s = t0.elapsed().as_secs_f64();
        let rss_untrimmed = rss_mib();
        seqd::datapath::dpdk::release_free_heap();
        let rss_parsed = rss_mib();
        println!(
            "{n}: RSS MiB after the TOML parse: {rss_untrimmed:.0}, \
             {rss_parsed:.0} once the free heap is released"
        );
        let t0 = Instant::now();
        config
            .validate(&seqd::control::config::available_cpus())
            .unwrap_or_else(|e| panic!("{e}"));
        let validate_s = t0.elapsed().as_secs_f64();
        let parse = toml_s + validate_s;
        println!("{n}: TOML {toml_s:.3} s, validation {validate_s:.3} s");
        drop(text);
        let rules: usize = config.acls.iter().map(|a| a.rules.len()).sum();
        let mut slots = Slots::for_first_config(n, 64, rules, config.acls.len());
        let first = services::compile_all(&config, 1, &mut slots).expect("compiles");
        let table_bytes = first.tables.memory_bytes();
        let published = Published::new(first.tables, workers);
        // Where the memory goes (freed memory may stay in the allocator, so
        // the config's own size is read off a second copy of it, made once
        // a first copy has used up what the TOML document left free).
        let copy1 = config.clone();
        let rss_copy1 = rss_mib();
        let copy2 = config.clone();
        println!(
            "{n}: one more copy of the parsed config: {:.0} MiB",
            rss_mib() - rss_copy1
        );
        drop((copy1, copy2));
        println!(
            "{n}: RSS MiB: start {rss_start:.0}, +TOML text {:.0}, +parsed config {:.0}, \
             after the first compile and publish {:.0} (tables {:.0} MiB)",
            rss_text - rss_start,
            rss_parsed - rss_text,
            rss_mib(),
            table_bytes as f64 / (1 << 20) as f64
        );
        // Where a whole compile goes, phase by phase (one run).
        let t0 = Instant::now();
        let tables = services::compile(&config, 1, &mut slots).expect("compiles");
        let t1 = Instant::now();
        let acls = seqd::control::acls::compile(&config, &mut slots).expect("compiles");
        let t2 = Instant::now();
        let defaults: Vec<_> = acls.default_index.iter().map(|(&k, &s)| (k, s)).collect();
        drop(tables.with_acl(acls.table, defaults));
        let t3 = Instant::now();
        println!(
            "{n}: services {:.3} s, ACLs {:.3} s, with_acl {:.3} s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64()
        );
        let mut runs = Vec::new();
        for v in 2..7 {
            let t0 = Instant::now();
            let c = services::compile_all(&config, v, &mut slots).expect("compiles");
            let t1 = Instant::now();
            published.publish(c.tables);
            let t2 = Instant::now();
            runs.push(((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64()));
        }
        runs.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
        let (c, p) = runs[runs.len() / 2];
        println!(
            "{:>9}  {:>10.3}  {:>10.3}  {:>10.3}  {:>10.3}  {:>16.0}  {:>9.0}",
            n,
            parse,
            c,
            p,
            c + p,
            table_bytes as f64 / n as f64,
            rss_mib()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
