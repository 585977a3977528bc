"""The preview proxy against a real app in a real sandbox: requests whose
Host is <port>-<sandbox id>.preview.localhost reach that port of the sandbox
through the port Docker published, or, for a port not published, through a
TCP stream of the sandbox's agent; bodies both ways (Content-Length and
chunked, sha256 compared), keep-alive to the app, the X-Forwarded headers the
app sees, HEAD, WebSockets, errors as JSON or HTML, hosts that are not ours."""
import hashlib
import http.client
import json
import os
import socket
import statistics
import time

from harness.paths import DATA
from harness.wait import until
from preview_util import PORT, preview_host, request, start_app, ws_echo
from sandboxes import templates_env

def test_proxy_bodies_both_ways(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c)
    bodies_both_ways(srv, host)


def test_agent_path_bodies_both_ways(server_factory):
    """Port 8001 is not published: the same exchanges through the agent."""
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c, port=8001)
    bodies_both_ways(srv, host)
    # one client connection, several requests, each on a stream of its own
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    for _ in range(3):
        r, data = request(srv, "GET", "/hello", host, conn=conn)
        assert (r.status, data) == (200, b"hello from the app")
    conn.close()


def bodies_both_ways(srv, host):
    r, data = request(srv, "GET", "/hello", host)
    assert (r.status, data) == (200, b"hello from the app")
    assert r.getheader("Content-Type") == "text/plain" and r.getheader("Content-Length") == "18"

    for size in (0, 1, 10 << 20):
        payload = os.urandom(size)
        r, data = request(srv, "POST", "/echo", host, body=payload)
        assert r.status == 200 and hashlib.sha256(data).digest() == hashlib.sha256(payload).digest(), size
        r, data = request(srv, "POST", "/sha", host, body=payload)
        assert (r.status, data) == (200, hashlib.sha256(payload).hexdigest().encode()), size
        r, data = request(srv, "GET", f"/bytes?n={size}", host)
        want = bytes(i % 251 for i in range(65536 - 65536 % 251))
        want = (want * (size // len(want) + 1))[:size]
        assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked", size
        assert hashlib.sha256(data).digest() == hashlib.sha256(want).digest(), size

    # a chunked request body reaches the app whole
    payload = os.urandom(3 << 20)
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    conn.putrequest("POST", "/sha", skip_host=True)
    conn.putheader("Host", host)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(payload), 100_000):
        piece = payload[i:i + 100_000]
        conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, hashlib.sha256(payload).hexdigest().encode())
    conn.close()

    # HEAD: the app's length, no body
    r, data = request(srv, "HEAD", "/hello", host)
    assert (r.status, data, r.getheader("Content-Length")) == (200, b"", "18")


def test_keep_alive_and_forwarded_headers(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c)

    # one client connection, several requests: the app sees one kept connection
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    seen = {request(srv, "GET", "/conn", host, conn=conn)[1] for _ in range(5)}
    conn.close()
    assert len(seen) == 1, seen
    # and a new client connection reuses the kept upstream one
    assert request(srv, "GET", "/conn", host)[1] in seen

    r, data = request(srv, "GET", "/headers?a=%2F&b=1", host,
                      headers={"X-Custom": "v", "Connection": "keep-alive, X-Drop", "X-Drop": "gone",
                               "X-Forwarded-For": "10.9.8.7"})
    assert r.status == 200
    import json
    seen = json.loads(data)
    h = {k.lower(): v for k, v in seen["headers"].items()}
    assert seen["path"] == "/headers?a=%2F&b=1"  # the target as sent, not decoded
    assert h["host"] == host and h["x-custom"] == "v" and "x-drop" not in h
    assert h["x-forwarded-for"] == "10.9.8.7, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http" and h["x-forwarded-host"] == host
    assert h["connection"] == "keep-alive"


def test_errors_and_hosts_not_ours(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_PREVIEW_CONNECT_TIMEOUT="1s"))
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "plain", "ports": [PORT, 9000]}, timeout=120)
    assert r.status == 201, r
    sid = r.json["id"]

    # nothing listens on the published port (Docker's proxy takes the
    # connection and closes it): 502, JSON or a page by Accept
    r, data = request(srv, "GET", "/", preview_host(sid, 9000))
    assert r.status == 502 and r.getheader("Content-Type") == "application/json"
    import json
    err = json.loads(data)["error"]
    assert err["code"] == "upstream_unreachable" and f"port 9000 of sandbox {sid}" in err["message"]
    r, data = request(srv, "GET", "/", preview_host(sid, 9000), headers={"Accept": "text/html,*/*"})
    assert r.status == 502 and r.getheader("Content-Type").startswith("text/html") and b"<h1>502</h1>" in data

    # a port that is not published: through the agent, which finds nothing there
    r, data = request(srv, "GET", "/", preview_host(sid, 7777))
    assert r.status == 502 and json.loads(data)["error"]["code"] == "upstream_unreachable"

    # an unknown sandbox and malformed preview hosts: 404 from us
    r, data = request(srv, "GET", "/", preview_host("0b8e2f4c-1d2a-4c3b-9e8f-7a6b5c4d3e2f"))
    assert r.status == 404 and json.loads(data)["error"]["code"] == "not_found"
    for bad in ("preview.localhost", f"0-{sid}.preview.localhost", f"8000-{sid[:-1]}.preview.localhost",
                f"a.8000-{sid}.preview.localhost"):
        r, data = request(srv, "GET", "/", bad)
        assert r.status == 404 and json.loads(data)["error"]["code"] == "not_found", bad

    # any other host is the API's
    r, data = request(srv, "GET", "/health", "localhost")
    assert (r.status, json.loads(data)) == (200, {"status": "ok"})
    r, data = request(srv, "GET", "/health", f"8000-{sid}.example.com")
    assert r.status == 200

    # a stopped sandbox: 409 (until wake-on-request)
    r = c.post(f"/api/sandboxes/{sid}/stop")
    assert r.status == 200, r
    r, data = request(srv, "GET", "/", preview_host(sid, 9000))
    assert r.status == 409 and json.loads(data)["error"]["code"] == "sandbox_not_running"


def test_app_that_closes_mid_answer_is_cut_cleanly(server_factory):
    """An app that promises more bytes than it sends: the client's answer is
    cut (no hang), and the server answers the next request."""
    srv = server_factory(env=templates_env())
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "plain", "ports": [PORT]}, timeout=120)
    assert r.status == 201, r
    sid = r.json["id"]
    liar = ("import socket\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('0.0.0.0', {PORT})); s.listen(8)\n"
            "while True:\n"
            "    k, _ = s.accept(); k.recv(65536)\n"
            "    k.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 1000\\r\\n\\r\\n' + b'x' * 10); k.close()\n")
    r = c.put(f"/api/sandboxes/{sid}/files/content?path=/tmp/liar.py", body=liar.encode())
    assert r.status == 201, r
    r = c.post(f"/api/sandboxes/{sid}/commands",
               json={"command": ["python3", "/tmp/liar.py"], "service": True, "port": PORT})
    assert r.status == 201, r
    host = preview_host(sid)

    def cut():
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        s.close()
        return buf
    buf = until(lambda: (lambda b: b if b.startswith(b"HTTP/1.1 200") else None)(cut()), timeout=30,
                what="the liar answering")
    head, _, body = buf.partition(b"\r\n\r\n")
    assert b"Content-Length: 1000" in head and body == b"x" * 10  # cut: closed after 10 of 1000
    r = c.get("/health")
    assert r.status == 200


def test_websocket_through_the_proxy(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c)
    ws_echo(srv, host)
    r = c.get("/health")
    assert r.status == 200


def test_websocket_through_the_agent(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c, port=8001)
    ws_echo(srv, host)


def test_agent_path_errors_and_cost(server_factory):
    """A port nothing listens on, not published: the agent's connect is
    refused, 502 at once. Then what each path costs: p50 of 200 GETs of
    /hello on one kept client connection, published (8000) and through the
    agent (8001), written to .data/log/preview_paths.txt for the README."""
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, direct = start_app(srv, c)
    t0 = time.monotonic()
    r, data = request(srv, "GET", "/", preview_host(sid, 8002))
    took = time.monotonic() - t0
    import json
    assert r.status == 502 and json.loads(data)["error"]["code"] == "upstream_unreachable", data
    assert "refused" in json.loads(data)["error"]["message"]
    assert took < 2, took
    _, agent = start_app(srv, c, port=8001, sid=sid)

    def p50(host, n=200):
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            r, data = request(srv, "GET", "/hello", host, conn=conn)
            times.append(time.perf_counter() - t)
            assert r.status == 200
        conn.close()
        return statistics.median(times) * 1000, sorted(times)[int(n * 0.99) - 1] * 1000

    def mbps(host, size=10 << 20):
        t = time.perf_counter()
        r, data = request(srv, "GET", f"/bytes?n={size}", host)
        assert r.status == 200 and len(data) == size
        return size / (time.perf_counter() - t) / 1e6

    p50(direct, 20), p50(agent, 20)  # warm both
    rows = []
    for name, host in (("published port", direct), ("agent stream", agent)):
        med, p99 = p50(host)
        rows.append(f"{name}: GET /hello p50 {med:.2f} ms, p99 {p99:.2f} ms; 10 MB GET {mbps(host):.0f} MB/s")
    os.makedirs(os.path.join(DATA, "log"), exist_ok=True)
    with open(os.path.join(DATA, "log", "preview_paths.txt"), "w") as f:
        f.write("\n".join(rows) + "\n")


def test_previews_only_listener(server_factory):
    """SANDBAR_PREVIEW_ADDR: a second listener that proxies preview hosts and
    answers anything else 404, while SERVER_ADDR keeps serving both."""
    from harness.server import free_port

    port = free_port()
    srv = server_factory(env={**templates_env(), "SANDBAR_PREVIEW_ADDR": f"127.0.0.1:{port}"})
    c = srv.client()
    sid, host = start_app(srv, c)

    class Previews:
        host = "127.0.0.1"

    Previews.port = port
    r, data = request(Previews, "POST", "/sha", host, body=b"through the second listener")
    assert (r.status, data) == (200, hashlib.sha256(b"through the second listener").hexdigest().encode())
    for path, h in (("/health", f"127.0.0.1:{port}"), (f"/api/sandboxes/{sid}", "localhost")):
        r, data = request(Previews, "GET", path, h)
        assert r.status == 404 and json.loads(data)["error"]["code"] == "not_a_preview_host", (path, data)
    assert c.get("/health").status == 200
    assert request(srv, "GET", "/hello", host)[0].status == 200


def test_idle_keep_alive_connections_leave_fresh_requests_alone(server_factory):
    """1,000 client connections each keep a proxied exchange's connection open
    (idle, keep-alive) while fresh requests are answered, and every one of
    them still works afterwards: nothing was dropped or starved. (How long a
    fresh request takes with them open: tools/bench.)"""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c)
    conns = []
    try:
        for i in range(1000):
            conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
            r, data = request(srv, "GET", "/hello", host, conn=conn)
            assert (r.status, data) == (200, b"hello from the app"), i
            conns.append(conn)
        for _ in range(20):
            r, data = request(srv, "POST", "/sha", host, body=b"fresh")
            assert (r.status, data) == (200, hashlib.sha256(b"fresh").hexdigest().encode())
            assert c.get("/health").status == 200
        for i, conn in enumerate(conns):
            r, data = request(srv, "GET", "/hello", host, conn=conn)
            assert (r.status, data) == (200, b"hello from the app"), i
    finally:
        for conn in conns:
            conn.close()
