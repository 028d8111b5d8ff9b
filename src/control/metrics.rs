//! The control thread's HTTP side: Prometheus `/metrics` (what billing
//! scrapes), `/v1/stats` (the same counters as JSON) and `/healthz`.
//!
//! It runs on its own thread with a small single-threaded tokio runtime,
//! off the worker cores; every scrape sums the per-core counters then.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tracing::{error, info};
use warp::Filter;

use crate::control::state::{ChangeError, ControlState};
use crate::datapath::dpdk::PortStats;
use crate::runtime::{Stats, StatsSource};
use parking_lot::Mutex;
use warp::http::StatusCode;

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

fn reply<T: serde::Serialize>(
    r: Result<T, ChangeError>,
) -> warp::reply::WithStatus<warp::reply::Json> {
    match r {
        Ok(v) => warp::reply::with_status(warp::reply::json(&v), StatusCode::OK),
        Err(e) => warp::reply::with_status(
            warp::reply::json(&serde_json::json!({
                "error": e.to_string(),
                "key": e.key,
                "value": e.value,
            })),
            StatusCode::BAD_REQUEST,
        ),
    }
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Admin,
    /// A tenant and the services it owns.
    Tenant(Vec<String>),
}

/// The caller of a request from its `Authorization: Bearer` header: 401
/// when tokens are configured and it has none or an unknown one. With no
/// token configured at all, everyone is admin.
fn who(state: &ControlState, auth: Option<String>) -> Result<Who, StatusCode> {
    let Some(c) = state.current().control.as_ref() else {
        return Ok(Who::Admin);
    };
    if c.admin_tokens.is_empty() && c.tenants.is_empty() {
        return Ok(Who::Admin);
    }
    let token = auth
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(StatusCode::UNAUTHORIZED)?;
    if c.admin_tokens.iter().any(|t| t == token) {
        return Ok(Who::Admin);
    }
    c.tenants
        .iter()
        .find(|t| t.token == token)
        .map(|t| Who::Tenant(t.services.clone()))
        .ok_or(StatusCode::UNAUTHORIZED)
}

fn status(code: StatusCode, message: &str) -> warp::reply::WithStatus<warp::reply::Json> {
    warp::reply::with_status(
        warp::reply::json(&serde_json::json!({ "error": message })),
        code,
    )
}

fn admin_only(
    state: &ControlState,
    auth: Option<String>,
) -> Result<(), warp::reply::WithStatus<warp::reply::Json>> {
    match who(state, auth) {
        Ok(Who::Admin) => Ok(()),
        Ok(Who::Tenant(_)) => Err(status(StatusCode::FORBIDDEN, "this needs an admin token")),
        Err(code) => Err(status(code, "a valid bearer token is required")),
    }
}

/// What a tenant may see of the counters: its own services and their ACLs.
fn tenant_view(mut s: Stats, services: &[String]) -> Stats {
    let own = |name: &Option<String>| name.as_ref().is_some_and(|n| services.contains(n));
    s.services.retain(|x| services.contains(&x.service));
    s.acl_rules.retain(|r| own(&r.service));
    s.acl_defaults.retain(|d| own(&d.service));
    s.acl_clients.retain(|c| own(&c.service));
    s.interfaces.clear();
    s.workers.clear();
    s.devices.clear();
    s.drops.clear();
    s
}

/// `/v1`: the provisioner replaces every table in one request
/// (`PUT /v1/tables`), checks one first (`POST /v1/validate`), and lists
/// the accepted versions (`GET /v1/versions`); a tenant replaces its own
/// service's ACLs (`PUT /v1/services/NAME/acl`) and reads its own counters
/// (`GET /v1/stats`). A change is applied whole or not at all.
fn rest_routes(
    state: Arc<Mutex<ControlState>>,
    source: StatsSource,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    // Bodies up to 64 MiB: a whole table of many thousand services.
    const MAX_BODY: u64 = 64 << 20;
    let auth = || warp::header::optional::<String>("authorization");
    let st = Arc::clone(&state);
    let put = warp::path!("v1" / "tables")
        .and(warp::put())
        .and(auth())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .map(move |auth: Option<String>, body: bytes::Bytes| {
            let mut s = st.lock();
            if let Err(r) = admin_only(&s, auth) {
                return r;
            }
            let change = s.with_tables(&body);
            reply(change.and_then(|c| s.apply(c, "rest")))
        });
    let st = Arc::clone(&state);
    let validate = warp::path!("v1" / "validate")
        .and(warp::post())
        .and(auth())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .map(move |auth: Option<String>, body: bytes::Bytes| {
            let s = st.lock();
            if let Err(r) = admin_only(&s, auth) {
                return r;
            }
            reply(s.with_tables(&body).and_then(|c| s.validate(&c)))
        });
    let st = Arc::clone(&state);
    let versions = warp::path!("v1" / "versions")
        .and(warp::get())
        .and(auth())
        .map(move |auth: Option<String>| {
            let s = st.lock();
            if let Err(r) = admin_only(&s, auth) {
                return r;
            }
            warp::reply::with_status(warp::reply::json(&s.versions().to_vec()), StatusCode::OK)
        });
    let st = Arc::clone(&state);
    let acl = warp::path!("v1" / "services" / String / "acl")
        .and(warp::put())
        .and(auth())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .map(
            move |service: String, auth: Option<String>, body: bytes::Bytes| {
                let mut s = st.lock();
                let caller = match who(&s, auth) {
                    Ok(w) => w,
                    Err(code) => return status(code, "a valid bearer token is required"),
                };
                if !s.current().services.iter().any(|x| x.name == service) {
                    return status(StatusCode::NOT_FOUND, &format!("no service {service:?}"));
                }
                if let Who::Tenant(own) = &caller {
                    if !own.contains(&service) {
                        return status(
                            StatusCode::FORBIDDEN,
                            &format!("service {service:?} is not yours"),
                        );
                    }
                }
                let change = s.with_service_acls(&service, &body);
                reply(change.and_then(|c| s.apply(c, "rest")))
            },
        );
    let st = state;
    let stats = warp::path!("v1" / "stats")
        .and(warp::get())
        .and(auth())
        .map(move |auth: Option<String>| {
            let caller = who(&st.lock(), auth);
            match caller {
                Ok(Who::Admin) => {
                    warp::reply::with_status(warp::reply::json(&source.collect()), StatusCode::OK)
                }
                Ok(Who::Tenant(own)) => warp::reply::with_status(
                    warp::reply::json(&tenant_view(source.collect(), &own)),
                    StatusCode::OK,
                ),
                Err(code) => status(code, "a valid bearer token is required"),
            }
        });
    put.or(validate).or(versions).or(acl).or(stats)
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

/// Serves `/metrics`, `/v1/stats` and `/healthz` on `listen` until `quit`
/// is set. Returns once the socket is bound (or failed to bind).
pub fn serve(
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    source: StatsSource,
    state: Arc<Mutex<ControlState>>,
    quit: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("seqd-control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let stop = |quit: Arc<AtomicBool>| async move {
                    while !quit.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                // /metrics on the main listener, or only on its own address.
                let on_main = metrics_listen.is_none();
                let metrics = |src: StatsSource, here: bool| {
                    warp::path!("metrics").and(warp::get()).and_then(move || {
                        let src = src.clone();
                        async move {
                            if !here {
                                return Err(warp::reject::not_found());
                            }
                            let body = render(&src.collect(), &src.publish_seconds);
                            Ok(warp::reply::with_header(
                                body,
                                "content-type",
                                "text/plain; version=0.0.4",
                            ))
                        }
                    })
                };
                let health = || warp::path!("healthz").and(warp::get()).map(|| "ok\n");
                let mut metrics_addr = None;
                if let Some(m) = metrics_listen {
                    let routes = metrics(source.clone(), true).or(health());
                    match warp::serve(routes)
                        .try_bind_with_graceful_shutdown(m, stop(Arc::clone(&quit)))
                    {
                        Ok((addr, server)) => {
                            metrics_addr = Some(addr);
                            tokio::spawn(server);
                        }
                        Err(e) => {
                            let _ = tx.send(Err(std::io::Error::other(format!(
                                "metrics_listen {m}: {e}"
                            ))));
                            return;
                        }
                    }
                }
                let routes = metrics(source.clone(), on_main)
                    .or(health())
                    .or(rest_routes(state, source.clone()));
                match warp::serve(routes)
                    .try_bind_with_graceful_shutdown(listen, stop(Arc::clone(&quit)))
                {
                    Ok((addr, server)) => {
                        let _ = tx.send(Ok((addr, metrics_addr)));
                        server.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string())));
                    }
                }
                // Let the metrics listener finish its own graceful stop.
                while !quit.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            });
        })?;
    match rx.recv() {
        Ok(Ok((addr, metrics_addr))) => {
            match metrics_addr {
                None => info!(%addr, "control listening (/metrics, /v1, /healthz)"),
                Some(m) => {
                    info!(addr = %m, "metrics listening (/metrics, /healthz)");
                    info!(%addr, "control listening (/v1, /healthz)");
                }
            }
            Ok((addr, handle))
        }
        Ok(Err(e)) => {
            let _ = handle.join();
            error!("control: cannot listen on {listen}: {e}");
            Err(e)
        }
        Err(_) => Err(std::io::Error::other("control thread ended before binding")),
    }
}
