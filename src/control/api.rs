//! The control thread's HTTP side: the REST API under `/v1` (what the
//! provisioner and tenants call), `/metrics` (see [`super::metrics`]) and
//! `/healthz`.
//!
//! It runs on its own thread with a small single-threaded tokio runtime,
//! off the worker cores.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{error, info};
use warp::http::StatusCode;
use warp::Filter;

use super::metrics::render;
use crate::control::state::{ChangeError, ControlState};
use crate::runtime::{Stats, StatsSource};

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
                            // Off this single-threaded runtime: with many
                            // services the sums and the text take a while,
                            // and the REST API is served meanwhile.
                            let rendered = tokio::task::spawn_blocking(move || {
                                render(&src.collect(), &src.publish_seconds)
                            })
                            .await;
                            let (code, body) = match rendered {
                                Ok(body) => (StatusCode::OK, body),
                                Err(e) => (
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    format!("rendering the metrics failed: {e}\n"),
                                ),
                            };
                            Ok(warp::reply::with_status(
                                warp::reply::with_header(
                                    body,
                                    "content-type",
                                    "text/plain; version=0.0.4",
                                ),
                                code,
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
