#!/usr/bin/env python3
"""Servers and clients for the end-to-end lab (scripts/e2e-topology.sh).

Runs inside a lab namespace (ip netns exec sqe-TAG-ROLE python3 e2e-tool.py ...):

  serve --dir D [--http PORT ...] [--udp PORT] --ready FILE
      HTTP file servers on the given ports and a UDP responder (answers
      "re:" + the request); writes FILE once every socket listens.
  get-many URL N --expect FILE
      N GET requests, each on a new TCP connection; every body must equal FILE.
  udp-ask HOST PORT N
      N request/response datagrams on a socket connected to HOST:PORT, so a
      reply counts only if it comes from exactly that address and port.

Client commands print one JSON line with what they did.
"""
import argparse
import http.client
import http.server
import json
import socket
import sys
import threading
import time


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(a):
    servers = []
    for port in a.http:
        handler = lambda *x, **k: Quiet(*x, directory=a.dir, **k)  # noqa: E731
        s = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler)
        s.daemon_threads = True
        servers.append(s)
    udp = None
    if a.udp:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", a.udp))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    with open(a.ready, "w") as f:
        f.write("ready\n")
    if udp:
        while True:
            data, peer = udp.recvfrom(2048)
            udp.sendto(b"re:" + data, peer)
    else:
        threading.Event().wait()


def get_many(a):
    host, _, rest = a.url.partition("//")[2].partition("/")
    name, _, port = host.partition(":")
    want = open(a.expect, "rb").read()
    ok = 0
    start = time.monotonic()
    for _ in range(a.n):
        c = http.client.HTTPConnection(name, int(port or 80), timeout=10)
        c.request("GET", "/" + rest)
        r = c.getresponse()
        body = r.read()
        c.close()
        if r.status == 200 and body == want:
            ok += 1
    print(json.dumps({"requests": a.n, "ok": ok, "seconds": round(time.monotonic() - start, 3)}))


def udp_ask(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((a.host, a.port))
    s.settimeout(1.0)
    answered = retries = 0
    for i in range(a.n):
        q = b"q%d" % i
        for _ in range(3):
            s.send(q)
            try:
                # A late answer to an earlier try is skipped, not counted twice.
                while s.recv(2048) != b"re:" + q:
                    pass
                answered += 1
                break
            except socket.timeout:
                retries += 1
    print(json.dumps({"sent": a.n + retries, "answered": answered, "retries": retries}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--dir", required=True)
    s.add_argument("--http", type=int, nargs="*", default=[])
    s.add_argument("--udp", type=int)
    s.add_argument("--ready", required=True)
    g = sub.add_parser("get-many")
    g.add_argument("url")
    g.add_argument("n", type=int)
    g.add_argument("--expect", required=True)
    u = sub.add_parser("udp-ask")
    u.add_argument("host")
    u.add_argument("port", type=int)
    u.add_argument("n", type=int)
    a = p.parse_args()
    {"serve": serve, "get-many": get_many, "udp-ask": udp_ask}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
