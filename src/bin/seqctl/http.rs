//! Just enough HTTP/1.1 for seqd's REST API: one request per connection
//! (`Connection: close`), plain `http://` (seqd serves no TLS), a JSON
//! body, and the reply read whole (by `Content-Length`, chunked, or to the
//! end of the stream).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where seqd listens: `http://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`, as connected to and sent in `Host:`.
    pub authority: String,
    /// A path prefix (a reverse proxy's), without the trailing `/`.
    pub prefix: String,
    /// As given, for messages.
    pub text: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let rest = if let Some(r) = text.strip_prefix("http://") {
            r
        } else if text.starts_with("https://") {
            return Err(format!(
                "{text}: seqd serves plain HTTP only (put a TLS proxy or an ssh tunnel in front, and give its http:// address)"
            ));
        } else {
            return Err(format!("{text}: not an http:// URL"));
        };
        let (host, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(format!("{text}: no host"));
        }
        // A port after the host (or after an IPv6 literal's `]`).
        let has_port = match host.rfind(':') {
            Some(i) => !host[i..].contains(']'),
            None => false,
        };
        let authority = if has_port {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        Ok(Url {
            authority,
            prefix: prefix.to_string(),
            text: text.to_string(),
        })
    }
}

/// One reply: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The reason phrase ("Conflict").
    pub reason: String,
    pub body: Vec<u8>,
}

/// Why there is no reply.
#[derive(Debug)]
pub struct HttpError(pub String);

/// `%XX`-escapes everything but unreserved characters, for one path segment.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends `method path` with `body` (JSON) and reads the whole reply.
pub fn request(
    url: &Url,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Reply, HttpError> {
    let fail = |what: &str, e: std::io::Error| {
        HttpError(format!("cannot reach seqd at {}: {what}: {e}", url.text))
    };
    let addrs: Vec<_> = url
        .authority
        .to_socket_addrs()
        .map_err(|e| fail("address", e))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout.min(Duration::from_secs(10))) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut s = match (stream, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(fail("connect", e)),
        (None, None) => {
            return Err(HttpError(format!(
                "cannot reach seqd at {}: the host has no address",
                url.text
            )))
        }
    };
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| fail("socket", e))?;
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: seqctl/{}\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
        url.prefix,
        url.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| fail("send", e))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| fail("reply", e))?;
    parse_reply(&raw).map_err(|e| HttpError(format!("{}: {e}", url.text)))
}

/// Splits a whole HTTP/1.x reply into status and (de-chunked) body.
pub fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the reply ended inside its headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "the reply's headers are not text")?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP reply: {status_line:?}"))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {v:?}"))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| format!("the reply ended after {} of {n} bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        reason,
        body,
    })
}

/// A `Transfer-Encoding: chunked` body, joined.
fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line has no end")?;
        let line = std::str::from_utf8(&b[..eol]).map_err(|_| "a chunk size is not text")?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
        b = &b[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        let chunk = b.get(..n).ok_or("the reply ended inside a chunk")?;
        out.extend_from_slice(chunk);
        b = b.get(n + 2..).ok_or("the reply ended after a chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.prefix, "");
        let u = Url::parse("http://seqd.example/api/").unwrap();
        assert_eq!(u.authority, "seqd.example:80");
        assert_eq!(u.prefix, "/api");
        let u = Url::parse("http://[::1]:9000/x").unwrap();
        assert_eq!(u.authority, "[::1]:9000");
        assert_eq!(u.prefix, "/x");
        assert_eq!(Url::parse("http://[::1]").unwrap().authority, "[::1]:80");
        assert!(Url::parse("https://h")
            .unwrap_err()
            .contains("plain HTTP only"));
        assert!(Url::parse("127.0.0.1:8080")
            .unwrap_err()
            .contains("not an http:// URL"));
        assert!(Url::parse("http:///v1").unwrap_err().contains("no host"));
    }

    #[test]
    fn segments() {
        assert_eq!(segment("acme-web_1.x~"), "acme-web_1.x~");
        assert_eq!(segment("a b/c%"), "a%20b%2Fc%25");
    }

    #[test]
    fn replies() {
        let r = parse_reply(
            b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), &r.body[..]),
            (409, "Conflict", &b"{}"[..])
        );
        let r = parse_reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse_reply(b"HTTP/1.0 200 OK\r\n\r\nto the end").unwrap();
        assert_eq!(r.body, b"to the end");
        assert!(
            parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort")
                .unwrap_err()
                .contains("5 of 9")
        );
        assert!(parse_reply(b"SSH-2.0-OpenSSH\r\n\r\n")
            .unwrap_err()
            .contains("not an HTTP reply"));
        assert!(
            parse_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .unwrap_err()
                .contains("inside a chunk")
        );
    }
}
