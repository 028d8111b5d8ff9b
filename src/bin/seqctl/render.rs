//! What seqctl prints: seqd's JSON replies as aligned tables and change
//! summaries. Every function takes the reply as it came (`serde_json::Value`)
//! and prints what is there; a missing field shows as `-`.

use serde_json::Value;

/// A field as text: strings without quotes, `null`/missing as `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default()
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// Rows under a header, each column as wide as its widest cell (the last
/// one not padded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2024-05-01T12:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to a civil date (proleptic Gregorian), after H. Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One service port: `80/tcp -> fw1 -> web1` (with `:8080` for a
/// translated port and `+2000-2099` for dynamic ports).
fn port(p: &Value) -> String {
    let mut s = format!("{}/{}", text(&p["port"]), text(&p["protocol"]));
    if !p["translate_to"].is_null() {
        s.push_str(&format!(":{}", text(&p["translate_to"])));
    }
    if !p["dynamic_ports"].is_null() {
        s.push_str(&format!(" +{}", text(&p["dynamic_ports"])));
    }
    for h in strings(&p["hops"]) {
        s.push_str(" -> ");
        s.push_str(&h);
    }
    s
}

pub fn services(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .iter()
        .map(|s| {
            let ports: Vec<String> = items(&s["port"]).iter().map(port).collect();
            vec![text(&s["name"]), text(&s["ip"]), ports.join("; ")]
        })
        .collect();
    table(&["SERVICE", "IP", "PORTS -> HOPS"], &rows)
}

pub fn devices(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .iter()
        .map(|d| {
            let taken = match d.get("taken_over_by") {
                None => "-".to_string(),
                Some(Value::Null) => "(nothing)".to_string(),
                Some(v) => text(v),
            };
            vec![
                text(&d["name"]),
                text(&d["mode"]),
                text(&d["interface"]),
                text(&d["mac"]),
                text(&d["ipv4"]),
                text(&d["state"]),
                taken,
                text(&d["alternate"]),
            ]
        })
        .collect();
    table(
        &[
            "DEVICE",
            "MODE",
            "INTERFACE",
            "MAC",
            "IPV4",
            "STATE",
            "TAKEN_OVER_BY",
            "ALTERNATE",
        ],
        &rows,
    )
}

pub fn pools(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .iter()
        .map(|p| vec![text(&p["name"]), strings(&p["devices"]).join(", ")])
        .collect();
    table(&["POOL", "DEVICES"], &rows)
}

pub fn versions(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .iter()
        .map(|v| {
            vec![
                text(&v["version"]),
                v["time"].as_u64().map_or_else(|| text(&v["time"]), rfc3339),
                text(&v["origin"]),
                text(&v["service_ports"]),
                text(&v["devices"]),
                text(&v["acl_rules"]),
                text(&v["change"]),
            ]
        })
        .collect();
    table(
        &[
            "VERSION", "TIME", "ORIGIN", "PORTS", "DEVICES", "RULES", "CHANGE",
        ],
        &rows,
    )
}

pub fn interfaces(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .iter()
        .map(|i| {
            let link = &i["link"];
            let link = match link["up"].as_bool() {
                None => "-".to_string(),
                Some(false) => "down".to_string(),
                Some(true) => format!("up {} Mb/s", text(&link["speed_mbps"])),
            };
            let p = &i["port"];
            vec![
                text(&i["name"]),
                text(&i["ipv4"]),
                text(&i["mac"]),
                link,
                text(&p["rx_packets"]),
                text(&p["tx_packets"]),
                text(&p["rx_missed"]),
                text(&i["device"]),
            ]
        })
        .collect();
    table(
        &[
            "INTERFACE",
            "IPV4",
            "MAC",
            "LINK",
            "RX_PACKETS",
            "TX_PACKETS",
            "RX_MISSED",
            "DEVICE",
        ],
        &rows,
    )
}

/// Per service port counters (`services` of `GET /v1/stats`).
pub fn stats(list: &[&Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                text(&s["service"]),
                text(&s["ip"]),
                format!("{}/{}", text(&s["port"]), text(&s["protocol"])),
                text(&s["packets_in"]),
                text(&s["bytes_in"]),
                text(&s["packets_out"]),
                text(&s["bytes_out"]),
            ]
        })
        .collect();
    table(
        &[
            "SERVICE",
            "IP",
            "PORT",
            "PACKETS_IN",
            "BYTES_IN",
            "PACKETS_OUT",
            "BYTES_OUT",
        ],
        &rows,
    )
}

/// What a change does (the `changes` of a reply), one line each:
/// `+ service x` added, `- device y` removed, `~ pool z` changed; then the
/// devices that are down and what takes over for them.
pub fn changes(c: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, key) in [
        ("service", "services"),
        ("device", "devices"),
        ("pool", "pools"),
    ] {
        for (mark, what) in [("+", "added"), ("-", "removed"), ("~", "changed")] {
            for name in strings(&c[key][what]) {
                out.push(format!("{mark} {kind} {name}"));
            }
        }
    }
    for a in strings(&c["acls"]) {
        if a == "(provider)" {
            out.push("~ acls of the provider (every service)".into());
        } else {
            out.push(format!("~ acls of service {a}"));
        }
    }
    if c["client"].as_bool() == Some(true) {
        out.push("~ client".into());
    }
    out
}

/// Whether `changes` changes anything (takeovers are a state, not a change).
pub fn changes_anything(c: &Value) -> bool {
    !changes(c).is_empty()
}

/// The devices that are down and what takes over for each.
pub fn takeovers(c: &Value) -> Vec<String> {
    c["takeovers"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(d, t)| match t {
                    Value::Null => {
                        format!("device {d} is down; nothing takes over: its sequences keep it")
                    }
                    t => format!("device {d} is down; {} takes over", text(t)),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A version record in one line: `version 3 (rest): 4 service ports, ...`.
pub fn record(v: &Value) -> String {
    format!(
        "version {} ({}): {} service ports, {} devices, {} ACL rules",
        text(&v["version"]),
        text(&v["origin"]),
        text(&v["service_ports"]),
        text(&v["devices"]),
        text(&v["acl_rules"]),
    )
}

/// The reply to a change: the version it made and what changed.
pub fn applied(reply: &Value) -> String {
    let mut out = record(reply);
    out.push('\n');
    let lines = changes(&reply["changes"]);
    if lines.is_empty() {
        out.push_str("no changes\n");
    }
    for l in lines.iter().chain(&takeovers(&reply["changes"])) {
        out.push_str(l);
        out.push('\n');
    }
    let regenerated = strings(&reply["regenerated"]);
    if !regenerated.is_empty() {
        out.push_str(&format!(
            "regenerated services: {}\n",
            regenerated.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "LONGER", "C"],
            &[
                vec!["xyz".into(), "1".into(), "last".into()],
                vec!["q".into(), "22".into(), "-".into()],
            ],
        );
        assert_eq!(t, "A    LONGER  C\nxyz  1       last\nq    22      -\n");
    }

    #[test]
    fn service_lines() {
        let s = json!([{ "name": "acme", "ip": "203.0.113.10", "port": [
            { "port": 80, "protocol": "tcp", "hops": ["fw1", "web1"] },
            { "port": 21, "protocol": "tcp", "translate_to": 2121, "dynamic_ports": "2000-2099", "hops": ["ftp1"] }
        ] }]);
        assert_eq!(
            services(&s),
            "SERVICE  IP            PORTS -> HOPS\nacme     203.0.113.10  80/tcp -> fw1 -> web1; 21/tcp:2121 +2000-2099 -> ftp1\n"
        );
    }

    #[test]
    fn change_lines() {
        let c = json!({
            "services": { "added": ["new"], "removed": ["old"], "changed": ["x"] },
            "devices": { "added": [], "removed": [], "changed": ["fw1"] },
            "pools": { "added": ["web"], "removed": [], "changed": [] },
            "acls": ["(provider)", "x"], "client": true,
            "takeovers": { "fw1": "fw2", "web1": null }
        });
        assert_eq!(
            changes(&c),
            [
                "+ service new",
                "- service old",
                "~ service x",
                "~ device fw1",
                "+ pool web",
                "~ acls of the provider (every service)",
                "~ acls of service x",
                "~ client"
            ]
        );
        assert_eq!(
            takeovers(&c),
            [
                "device fw1 is down; fw2 takes over",
                "device web1 is down; nothing takes over: its sequences keep it"
            ]
        );
        let none = json!({
            "services": { "added": [], "removed": [], "changed": [] },
            "devices": { "added": [], "removed": [], "changed": [] },
            "pools": { "added": [], "removed": [], "changed": [] },
            "acls": [], "client": false, "takeovers": { "fw1": "fw2" }
        });
        assert!(!changes_anything(&none));
        assert!(changes_anything(&c));
    }
}
