"""Shared helpers of the preview tests (straight to sandbard, and through
nginx): the test app started as a service in a sandbox, requests by Host,
and a raw WebSocket handshake and echo to the app's /ws."""
import http.client
import os
import socket

from harness.wait import until

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "preview_app.py")
PORT = 8000


def preview_host(sid, port=PORT, domain="preview.localhost"):
    return f"{port}-{sid}.{domain}"


def request(srv, method, path, host, body=None, headers=None, timeout=60, conn=None, source=None):
    """One request to srv (anything with .host and .port) with this Host;
    source: the local address to send from (a loopback one other than 127.0.0.1)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection(srv.host, srv.port, timeout=timeout,
                                              source_address=(source, 0) if source else None)
    h = {"Host": host}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    if own:
        conn.close()
    return r, data


def start_app(srv, c, domain="preview.localhost", port=PORT, sid=None, **body):
    """The test app as a service on port of a sandbox whose published port is
    PORT (a new one made through client c with body's fields, unless sid):
    port != PORT is reached through the agent. (sandbox id, preview host)."""
    if sid is None:
        r = c.post("/api/sandboxes", json={"template": "plain", "ports": [PORT], **body}, timeout=120)
        assert r.status == 201, r
        sid = r.json["id"]
    with open(APP, "rb") as f:
        r = c.put(f"/api/sandboxes/{sid}/files/content?path=/tmp/app.py", body=f.read())
    assert r.status in (200, 201), r
    r = c.post(f"/api/sandboxes/{sid}/commands",
               json={"command": ["python3", "/tmp/app.py", str(port)], "service": True, "port": port})
    assert r.status == 201, r
    host = preview_host(sid, port, domain=domain)
    until(lambda: request(srv, "GET", "/hello", host)[0].status == 200, timeout=30, what="the app answering")
    return sid, host


def ws_frame(payload, op=1):
    mask = os.urandom(4)
    n = len(payload)
    size = bytes([0x80 | n]) if n < 126 else b"\xfe" + n.to_bytes(2, "big") if n < 65536 else \
        b"\xff" + n.to_bytes(8, "big")
    return bytes([0x80 | op]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        assert d, f"closed after {len(buf)} of {n} bytes"
        buf += d
    return buf


def ws_read(s):
    head = recv_exact(s, 2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(recv_exact(s, 2), "big")
    elif n == 127:
        n = int.from_bytes(recv_exact(s, 8), "big")
    return head[0] & 0x0F, recv_exact(s, n)


def ws_echo(srv, host, first=b"sent with the head"):
    """Opens the app's /ws through srv with `first` sent right behind the
    head, checks the 101 and the echo of it, of a small, a 100 kB and a
    3 MiB binary message, and the close passed both ways."""
    s = socket.create_connection((srv.host, srv.port), timeout=20)
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
              + ws_frame(first))
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        assert d, f"closed during the handshake: {head!r}"
        head += d
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols", lines
    fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    assert fields["upgrade"].lower() == "websocket" and fields["connection"].lower() == "upgrade"
    assert fields["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert ws_read(s) == (1, first)  # bytes behind the head were not lost
    for payload in (b"hello", os.urandom(100_000), os.urandom(3 << 20)):
        s.sendall(ws_frame(payload, op=2))
        assert ws_read(s) == (2, payload)
    s.sendall(ws_frame(b"", op=8))
    assert ws_read(s) == (8, b"")
    assert s.recv(10) == b""  # the app closed: so did the proxy
    s.close()
