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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::Config;
use super::edit::{self, ApiError};
use super::metrics::render;
use super::services::{self, DeviceConfig, DeviceState, PoolConfig, ServiceConfig};
use super::state::{self, ControlState, TablesBody};
use crate::runtime::{Stats, StatsSource};

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Admin,
    /// A tenant and the services it owns.
    Tenant(Vec<String>),
}

impl Who {
    fn owns(&self, service: &str) -> bool {
        match self {
            Who::Admin => true,
            Who::Tenant(own) => own.iter().any(|s| s == service),
        }
    }
}

/// The caller of a request from its `Authorization: Bearer` header: 401
/// when tokens are configured and it has none or an unknown one. With no
/// token configured at all, everyone is admin.
fn who(config: &Config, auth: Option<&str>) -> Result<Who, ApiError> {
    let Some(c) = config.control.as_ref() else {
        return Ok(Who::Admin);
    };
    if c.admin_tokens.is_empty() && c.tenants.is_empty() {
        return Ok(Who::Admin);
    }
    let unauthorized = || ApiError::status(401, "a valid bearer token is required");
    let token = auth
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(unauthorized)?;
    if c.admin_tokens.iter().any(|t| t == token) {
        return Ok(Who::Admin);
    }
    c.tenants
        .iter()
        .find(|t| t.token == token)
        .map(|t| Who::Tenant(t.services.clone()))
        .ok_or_else(unauthorized)
}

/// What a tenant may see of the counters: its own services and their ACLs.
fn tenant_view(mut s: Stats, who: &Who) -> Stats {
    if *who == Who::Admin {
        return s;
    }
    let own = |name: &Option<String>| name.as_deref().is_some_and(|n| who.owns(n));
    s.services.retain(|x| who.owns(&x.service));
    s.acl_rules.retain(|r| own(&r.service));
    s.acl_defaults.retain(|d| own(&d.service));
    s.acl_clients.retain(|c| own(&c.service));
    s.interfaces.clear();
    s.workers.clear();
    s.devices.clear();
    s.drops.clear();
    s
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Admin,
    /// Admins, and the tenant owning the service named by the first path
    /// parameter.
    ServiceOwner,
    /// Admins and tenants; what a tenant gets is cut to its own services.
    Anyone,
}

/// One request, after routing and authentication.
struct Request {
    method: String,
    path: String,
    params: Vec<String>,
    body: bytes::Bytes,
    who: Who,
}

impl Request {
    /// How the request is remembered in the version it makes.
    fn change(&self) -> Option<String> {
        Some(format!("{} {}", self.method, self.path))
    }
}

struct Ctx {
    state: Arc<Mutex<ControlState>>,
    source: StatsSource,
}

/// A reply: status and JSON body.
type Reply = Result<(u16, Value), ApiError>;
type Handler = fn(&Ctx, &Request) -> Reply;

/// One route of the REST API. The table below is the API: the router
/// serves exactly these, and docs/openapi.json documents exactly these (a
/// test holds them together).
pub struct Route {
    pub method: &'static str,
    /// With `{name}` parameters.
    pub path: &'static str,
    pub access: Access,
    handler: Handler,
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    handler: Handler,
) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

/// Routes served beside the REST API: not JSON, no token.
pub const PLAIN_ROUTES: &[(&str, &str)] = &[("GET", "/metrics"), ("GET", "/healthz")];

use Access::{Admin, Anyone, ServiceOwner};

pub const ROUTES: &[Route] = &[
    route("GET", "/v1/interfaces", Admin, get_interfaces),
    route("GET", "/v1/tables", Admin, get_tables),
    route("PUT", "/v1/tables", Admin, put_tables),
    route("POST", "/v1/validate", Admin, validate),
    route("GET", "/v1/versions", Admin, list_versions),
    route("GET", "/v1/versions/{version}", Admin, get_version),
    route("POST", "/v1/versions/{version}/rollback", Admin, rollback),
    route("GET", "/v1/devices", Admin, list_devices),
    route("POST", "/v1/devices", Admin, create_device),
    route("GET", "/v1/devices/{device}", Admin, get_device),
    route("PUT", "/v1/devices/{device}", Admin, put_device),
    route("DELETE", "/v1/devices/{device}", Admin, delete_device),
    route("PUT", "/v1/devices/{device}/state", Admin, put_device_state),
    route(
        "POST",
        "/v1/devices/{device}/replace",
        Admin,
        replace_device,
    ),
    route("GET", "/v1/pools", Admin, list_pools),
    route("POST", "/v1/pools", Admin, create_pool),
    route("GET", "/v1/pools/{pool}", Admin, get_pool),
    route("PUT", "/v1/pools/{pool}", Admin, put_pool),
    route("DELETE", "/v1/pools/{pool}", Admin, delete_pool),
    route("GET", "/v1/services", Anyone, list_services),
    route("POST", "/v1/services", Admin, create_service),
    route("GET", "/v1/services/{service}", ServiceOwner, get_service),
    route("PUT", "/v1/services/{service}", Admin, put_service),
    route("DELETE", "/v1/services/{service}", Admin, delete_service),
    route(
        "POST",
        "/v1/services/{service}/replicate",
        Admin,
        replicate_service,
    ),
    route(
        "GET",
        "/v1/services/{service}/acl",
        ServiceOwner,
        get_service_acl,
    ),
    route(
        "PUT",
        "/v1/services/{service}/acl",
        ServiceOwner,
        put_service_acl,
    ),
    route("GET", "/v1/stats", Anyone, get_stats),
];

fn json<T: Serialize>(status: u16, v: &T) -> Reply {
    Ok((status, serde_json::to_value(v).expect("replies serialize")))
}

/// Applies `edit` to the running config and publishes the result as the
/// next version; the reply is the version and what changed (201 when
/// `edit` says it created something), with `extra` fields from the edit.
fn change<T: Serialize>(
    ctx: &Ctx,
    req: &Request,
    edit: impl FnOnce(&mut Config) -> Result<(bool, T), ApiError>,
) -> Reply {
    let mut st = ctx.state.lock();
    let mut new = st.current().clone();
    let (created, extra) = edit(&mut new)?;
    let applied = st.apply_change(new, "rest", req.change())?;
    let mut v = serde_json::to_value(&applied).expect("replies serialize");
    if let (Value::Object(o), Value::Object(x)) = (
        &mut v,
        serde_json::to_value(&extra).expect("replies serialize"),
    ) {
        o.extend(x);
    }
    Ok((if created { 201 } else { 200 }, v))
}

/// No extra reply fields.
#[derive(Serialize)]
struct Nothing {}

/// A compile error about the object a request edits, with its key made
/// relative to the body (`service[57].port[0].hops[1]` -> `port[0].hops[1]`).
fn relative(mut e: ApiError, prefix: &str) -> ApiError {
    if let Some(rest) = e.key.strip_prefix(prefix) {
        let rest = rest.strip_prefix('.').unwrap_or(rest).to_string();
        e.error = e.error.replacen(&e.key, &rest, 1);
        e.key = rest;
    }
    e
}

fn get_interfaces(ctx: &Ctx, _: &Request) -> Reply {
    json(200, &ctx.source.collect().interfaces)
}

fn get_tables(ctx: &Ctx, _: &Request) -> Reply {
    let st = ctx.state.lock();
    let version = st.versions().last().map_or(0, |v| v.version);
    json(
        200,
        &serde_json::json!({ "version": version, "tables": TablesBody::of(st.current()) }),
    )
}

fn put_tables(ctx: &Ctx, req: &Request) -> Reply {
    let mut st = ctx.state.lock();
    let new = st.with_tables(&req.body)?;
    let applied = st.apply_change(new, "rest", req.change());
    drop(st);
    // A whole table's JSON and its compile free far more than they keep.
    crate::datapath::dpdk::release_free_heap();
    json(200, &applied?)
}

fn validate(ctx: &Ctx, req: &Request) -> Reply {
    let mut st = ctx.state.lock();
    let new = st.with_tables(&req.body)?;
    json(200, &st.validate(&new)?)
}

fn list_versions(ctx: &Ctx, _: &Request) -> Reply {
    json(200, &ctx.state.lock().versions())
}

fn version_param(req: &Request) -> Result<u64, ApiError> {
    req.params[0].parse().map_err(|_| {
        ApiError::bad(
            "version",
            Some(format!("{:?}", req.params[0])),
            "a version is a number",
        )
    })
}

fn not_kept(version: u64, st: &ControlState) -> ApiError {
    let keep = st
        .current()
        .control
        .as_ref()
        .map_or(state::DEFAULT_KEEP_VERSIONS, |c| c.keep_versions);
    ApiError::status(
        404,
        format!("version {version} is not kept (the last {keep} are; control.keep_versions)"),
    )
}

fn get_version(ctx: &Ctx, req: &Request) -> Reply {
    let version = version_param(req)?;
    let st = ctx.state.lock();
    let (record, tables) = st
        .version_tables(version)?
        .ok_or_else(|| not_kept(version, &st))?;
    json(
        200,
        &serde_json::json!({ "version": record, "tables": *tables }),
    )
}

fn rollback(ctx: &Ctx, req: &Request) -> Reply {
    let version = version_param(req)?;
    let mut st = ctx.state.lock();
    match st.rollback(version)? {
        Some(applied) => json(200, &applied),
        None => Err(not_kept(version, &st)),
    }
}

fn list_devices(ctx: &Ctx, _: &Request) -> Reply {
    let st = ctx.state.lock();
    let c = st.current();
    let takeovers = services::takeovers(c).unwrap_or_default();
    let list: Vec<Value> = c
        .devices
        .iter()
        .map(|d| device_view(d, &takeovers))
        .collect();
    json(200, &list)
}

/// A device as configured, with what takes over for it while it is down.
fn device_view(
    d: &DeviceConfig,
    takeovers: &std::collections::BTreeMap<String, Option<String>>,
) -> Value {
    let mut v = serde_json::to_value(d).expect("devices serialize");
    if let Value::Object(o) = &mut v {
        o.insert(
            "state".into(),
            serde_json::to_value(d.state).expect("state"),
        );
        if let Some(t) = takeovers.get(&d.name) {
            o.insert(
                "taken_over_by".into(),
                serde_json::to_value(t).expect("name"),
            );
        }
    }
    v
}

fn get_device(ctx: &Ctx, req: &Request) -> Reply {
    let st = ctx.state.lock();
    let c = st.current();
    let name = &req.params[0];
    let d = c
        .devices
        .iter()
        .find(|d| d.name == *name)
        .ok_or_else(|| ApiError::not_found("device", name))?;
    let mut v = device_view(d, &services::takeovers(c).unwrap_or_default());
    if let Value::Object(o) = &mut v {
        o.insert(
            "used_by".into(),
            serde_json::to_value(edit::device_users(c, name)).expect("names"),
        );
    }
    json(200, &v)
}

fn device_prefix(c: &Config, name: &str) -> String {
    let i = c
        .devices
        .iter()
        .position(|d| d.name == name)
        .unwrap_or(usize::MAX);
    format!("device[{i}]")
}

fn create_device(ctx: &Ctx, req: &Request) -> Reply {
    let d: DeviceConfig = edit::parse(&req.body, None)?;
    let name = d.name.clone();
    let mut prefix = String::new();
    change(ctx, req, |c| {
        edit::put_device(c, d, false)?;
        prefix = device_prefix(c, &name);
        Ok((true, Nothing {}))
    })
    .map_err(|e| relative(e, &prefix))
}

fn put_device(ctx: &Ctx, req: &Request) -> Reply {
    let d: DeviceConfig = edit::parse(&req.body, Some(&req.params[0]))?;
    let mut prefix = String::new();
    change(ctx, req, |c| {
        let created = edit::put_device(c, d, true)?;
        prefix = device_prefix(c, &req.params[0]);
        Ok((created, Nothing {}))
    })
    .map_err(|e| relative(e, &prefix))
}

fn delete_device(ctx: &Ctx, req: &Request) -> Reply {
    change(ctx, req, |c| {
        edit::delete_device(c, &req.params[0])?;
        Ok((false, Nothing {}))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: DeviceState,
}

fn put_device_state(ctx: &Ctx, req: &Request) -> Reply {
    let b: StateBody = edit::parse(&req.body, None)?;
    change(ctx, req, |c| {
        edit::set_device_state(c, &req.params[0], b.state)?;
        Ok((false, Nothing {}))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceBody {
    with: String,
}

#[derive(Serialize)]
struct Regenerated {
    regenerated: Vec<String>,
}

fn replace_device(ctx: &Ctx, req: &Request) -> Reply {
    let b: ReplaceBody = edit::parse(&req.body, None)?;
    change(ctx, req, |c| {
        let regenerated = edit::replace_device(c, &req.params[0], &b.with)?;
        Ok((false, Regenerated { regenerated }))
    })
}

fn list_pools(ctx: &Ctx, _: &Request) -> Reply {
    json(200, &ctx.state.lock().current().pools)
}

fn get_pool(ctx: &Ctx, req: &Request) -> Reply {
    let st = ctx.state.lock();
    let p = st
        .current()
        .pools
        .iter()
        .find(|p| p.name == req.params[0])
        .ok_or_else(|| ApiError::not_found("pool", &req.params[0]))?;
    json(200, p)
}

fn pool_prefix(c: &Config, name: &str) -> String {
    let i = c
        .pools
        .iter()
        .position(|p| p.name == name)
        .unwrap_or(usize::MAX);
    format!("pool[{i}]")
}

fn create_pool(ctx: &Ctx, req: &Request) -> Reply {
    let p: PoolConfig = edit::parse(&req.body, None)?;
    let name = p.name.clone();
    let mut prefix = String::new();
    change(ctx, req, |c| {
        edit::put_pool(c, p, false)?;
        prefix = pool_prefix(c, &name);
        Ok((true, Nothing {}))
    })
    .map_err(|e| relative(e, &prefix))
}

fn put_pool(ctx: &Ctx, req: &Request) -> Reply {
    let p: PoolConfig = edit::parse(&req.body, Some(&req.params[0]))?;
    let mut prefix = String::new();
    change(ctx, req, |c| {
        let created = edit::put_pool(c, p, true)?;
        prefix = pool_prefix(c, &req.params[0]);
        Ok((created, Nothing {}))
    })
    .map_err(|e| relative(e, &prefix))
}

fn delete_pool(ctx: &Ctx, req: &Request) -> Reply {
    change(ctx, req, |c| {
        edit::delete_pool(c, &req.params[0])?;
        Ok((false, Nothing {}))
    })
}

fn list_services(ctx: &Ctx, req: &Request) -> Reply {
    let st = ctx.state.lock();
    let list: Vec<&ServiceConfig> = st
        .current()
        .services
        .iter()
        .filter(|s| req.who.owns(&s.name))
        .collect();
    json(200, &list)
}

fn get_service(ctx: &Ctx, req: &Request) -> Reply {
    let st = ctx.state.lock();
    let s = st
        .current()
        .services
        .iter()
        .find(|s| s.name == req.params[0])
        .ok_or_else(|| ApiError::not_found("service", &req.params[0]))?;
    json(200, s)
}

fn service_prefix(c: &Config, name: &str) -> String {
    let i = c
        .services
        .iter()
        .position(|s| s.name == name)
        .unwrap_or(usize::MAX);
    format!("service[{i}]")
}

fn create_service(ctx: &Ctx, req: &Request) -> Reply {
    let s: ServiceConfig = edit::parse(&req.body, None)?;
    let name = s.name.clone();
    let mut prefix = String::new();
    change(ctx, req, |c| {
        edit::put_service(c, s, false)?;
        prefix = service_prefix(c, &name);
        Ok((true, Nothing {}))
    })
    .map_err(|e| relative(e, &prefix))
}

fn put_service(ctx: &Ctx, req: &Request) -> Reply {
    let s: ServiceConfig = edit::parse(&req.body, Some(&req.params[0]))?;
    let mut prefix = String::new();
    change(ctx, req, |c| {
        let created = edit::put_service(c, s, true)?;
        prefix = service_prefix(c, &req.params[0]);
        Ok((created, Nothing {}))
    })
    .map_err(|e| relative(e, &prefix))
}

fn delete_service(ctx: &Ctx, req: &Request) -> Reply {
    change(ctx, req, |c| {
        edit::delete_service(c, &req.params[0])?;
        Ok((false, Nothing {}))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicateBody {
    name: String,
    #[serde(deserialize_with = "crate::control::config::de_ipv4")]
    ip: std::net::Ipv4Addr,
}

fn replicate_service(ctx: &Ctx, req: &Request) -> Reply {
    let b: ReplicateBody = edit::parse(&req.body, None)?;
    change(ctx, req, |c| {
        edit::replicate_service(c, &req.params[0], &b.name, b.ip)?;
        Ok((true, Nothing {}))
    })
}

fn get_service_acl(ctx: &Ctx, req: &Request) -> Reply {
    let st = ctx.state.lock();
    let c = st.current();
    let name = &req.params[0];
    if !c.services.iter().any(|s| s.name == *name) {
        return Err(ApiError::not_found("service", name));
    }
    let acls: Vec<_> = c
        .acls
        .iter()
        .filter(|a| a.service.as_deref() == Some(name.as_str()))
        .collect();
    json(200, &acls)
}

fn put_service_acl(ctx: &Ctx, req: &Request) -> Reply {
    let mut st = ctx.state.lock();
    let name = &req.params[0];
    if !st.current().services.iter().any(|s| s.name == *name) {
        return Err(ApiError::not_found("service", name));
    }
    let new = st.with_service_acls(name, &req.body)?;
    json(200, &st.apply_change(new, "rest", req.change())?)
}

fn get_stats(ctx: &Ctx, req: &Request) -> Reply {
    json(200, &tenant_view(ctx.source.collect(), &req.who))
}

/// `%XX` escapes in a path segment.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parameters of `path` if it matches `pattern`.
fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut p = pattern.trim_matches('/').split('/');
    let mut s = path
        .trim_end_matches('/')
        .trim_start_matches('/')
        .split('/');
    let mut params = Vec::new();
    loop {
        match (p.next(), s.next()) {
            (None, None) => return Some(params),
            (Some(want), Some(got)) if want.starts_with('{') => {
                if got.is_empty() {
                    return None;
                }
                params.push(percent_decode(got));
            }
            (Some(want), Some(got)) if want == got => {}
            _ => return None,
        }
    }
}

/// Routes, authenticates and runs one request (on a blocking thread: a
/// change compiles there while the control thread goes on serving).
fn dispatch(
    ctx: &Ctx,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: bytes::Bytes,
) -> (u16, Value) {
    let error = |e: ApiError| {
        (
            e.status,
            serde_json::to_value(&e).expect("errors serialize"),
        )
    };
    let candidates: Vec<(&Route, Vec<String>)> = ROUTES
        .iter()
        .filter_map(|r| matches(r.path, path).map(|p| (r, p)))
        .collect();
    if candidates.is_empty() {
        return error(ApiError::status(404, format!("no such route: {path}")));
    }
    let Some((route, params)) = candidates.iter().find(|(r, _)| r.method == method) else {
        let allowed: Vec<&str> = candidates.iter().map(|(r, _)| r.method).collect();
        return error(ApiError::status(
            405,
            format!(
                "{method} is not allowed on {path} (allowed: {})",
                allowed.join(", ")
            ),
        ));
    };
    let caller = {
        let st = ctx.state.lock();
        who(st.current(), auth)
    };
    let who = match caller {
        Ok(w) => w,
        Err(e) => return error(e),
    };
    let allowed = match (route.access, &who) {
        (_, Who::Admin) | (Access::Anyone, _) => true,
        (Access::ServiceOwner, w) => w.owns(&params[0]),
        (Access::Admin, Who::Tenant(_)) => false,
    };
    if !allowed {
        return error(ApiError::status(
            403,
            if route.access == Access::ServiceOwner {
                format!("service {:?} is not yours", params[0])
            } else {
                "this needs an admin token".to_string()
            },
        ));
    }
    let req = Request {
        method: method.to_string(),
        path: path.to_string(),
        params: params.clone(),
        body,
        who,
    };
    match (route.handler)(ctx, &req) {
        Ok(r) => r,
        Err(e) => error(e),
    }
}

/// `/v1`: every route in [`ROUTES`]. A change is applied whole or not at
/// all; errors are JSON with the status (400 names the JSON path and value,
/// 404, 405, 409 with what still uses the object).
fn rest_routes(
    state: Arc<Mutex<ControlState>>,
    source: StatsSource,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    // Bodies up to 64 MiB: a whole table of many thousand services.
    const MAX_BODY: u64 = 64 << 20;
    let ctx = Arc::new(Ctx { state, source });
    let with_body = warp::put()
        .or(warp::post())
        .unify()
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes());
    let without_body = warp::any().map(bytes::Bytes::new);
    warp::path("v1")
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_body.or(without_body).unify())
        .and_then(
            move |method: warp::http::Method,
                  path: warp::path::FullPath,
                  auth: Option<String>,
                  body: bytes::Bytes| {
                let ctx = Arc::clone(&ctx);
                async move {
                    let path = path.as_str().to_string();
                    let (status, v) = tokio::task::spawn_blocking(move || {
                        dispatch(&ctx, method.as_str(), &path, auth.as_deref(), body)
                    })
                    .await
                    .unwrap_or_else(|e| {
                        error!("a REST request failed: {e}");
                        (500, serde_json::json!({ "error": "internal error" }))
                    });
                    Ok::<_, warp::Rejection>(warp::reply::with_status(
                        warp::reply::json(&v),
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    ))
                }
            },
        )
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
