"""sandbard behind Debian's nginx running the shipped tools/nginx/sandbar.conf
(harness/nginx.py changes only its listen port and upstream address): the
API by its name (create, a blocking exec, an SSE exec stream whose events
arrive as the command prints them, a 100 MB upload and its download, sha256
compared), and previews by the wildcard name (a page, a body, the
X-Forwarded headers the app sees, a WebSocket echo, sandbard's own 404),
and a wake: a POST to a stopped sandbox's preview held through nginx until
the app answers it."""
import hashlib
import http.client
import json
import time

from commands_util import execute, parse_sse
from harness.nginx import API_HOST, PREVIEW_DOMAIN
from preview_util import preview_host, request, start_app, ws_echo
from sandboxes import templates_env
from test_files import download, mib_chunks, upload
from test_wake import starts, status, stop


def front(server_factory, nginx_front):
    srv = server_factory(env=templates_env(SANDBAR_PREVIEW_DOMAIN=PREVIEW_DOMAIN))
    return srv, nginx_front(srv)


def sse_exec(n, sid, command):
    """POSTs an SSE /execute through nginx and reads it as it comes: the
    events, each with the moment it arrived ("at", monotonic seconds)."""
    conn = http.client.HTTPConnection(n.host, n.port, timeout=60)
    conn.request("POST", f"/api/sandboxes/{sid}/execute", body=json.dumps({"command": command}),
                 headers={"Host": API_HOST, "Accept": "text/event-stream", "Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream", r.status
    events, block = [], b""
    while True:
        line = r.readline()
        if not line:
            break
        block += line
        if line == b"\n":
            for ev in parse_sse(block):
                ev["at"] = time.monotonic()
                events.append(ev)
            block = b""
    conn.close()
    return events


def test_api_through_nginx(server_factory, nginx_front):
    srv, n = front(server_factory, nginx_front)
    api = n.api_client(timeout=120)
    r = api.get("/health")
    assert (r.status, r.json) == (200, {"status": "ok"})
    r = api.post("/api/sandboxes", json={"template": "plain"})
    assert r.status == 201, r
    sid = r.json["id"]
    r = api.get(f"/api/sandboxes/{sid}")
    assert r.status == 200 and r.json["status"] == "running", r

    r = execute(api, sid, "echo hello; exit 3")
    assert r.status == 200 and (r.json["stdout"], r.json["exit_code"]) == ("hello\n", 3), r

    # SSE: the first line is seen while the command still sleeps, not
    # collected by nginx until the stream ends
    events = sse_exec(n, sid, "echo first; sleep 2; echo second; sleep 1")
    types = [e["type"] for e in events]
    assert types[0] == "start" and types[-1] == "exit" and events[-1]["exit_code"] == 0, events
    out = [e for e in events if e["type"] == "stdout"]
    assert "".join(e["data"] for e in out) == "first\nsecond\n", out
    first = next(e for e in out if "first" in e["data"])
    assert events[-1]["at"] - first["at"] > 2.0, "the first line arrived with the end of the stream"

    # 100 MB (UPLOAD_LIMIT exactly: client_max_body_size leaves room for the
    # multipart framing) streamed up and down through nginx
    size = 100 << 20
    h = hashlib.sha256()
    st, body = upload(n, sid, "big.bin", mib_chunks(size, h), size, headers={"Host": API_HOST})
    assert st == 200, body
    assert json.loads(body) == {"status": "ok", "path": "/workspace/big.bin"}
    r, _, got, digest = download(n, sid, "/workspace/big.bin", sink=True, headers={"Host": API_HOST})
    assert r.status == 200 and got == size and digest == h.hexdigest()
    api.close()


def test_previews_through_nginx(server_factory, nginx_front):
    srv, n = front(server_factory, nginx_front)
    api = n.api_client(timeout=120)
    # started, and waited for, through nginx: the wildcard name reaches it
    sid, host = start_app(n, api, domain=PREVIEW_DOMAIN)

    r, data = request(n, "GET", "/hello", host)
    assert (r.status, data) == (200, b"hello from the app")
    payload = bytes(range(256)) * 4096
    r, data = request(n, "POST", "/sha", host, body=payload)
    assert (r.status, data) == (200, hashlib.sha256(payload).hexdigest().encode())

    # from another loopback address: nginx adds the client's, sandbard nginx's
    r, data = request(n, "GET", "/headers", host, source="127.0.0.2")
    assert r.status == 200
    h = {k.lower(): v for k, v in json.loads(data)["headers"].items()}
    assert h["host"] == host and h["x-forwarded-host"] == host and h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-for"] == "127.0.0.2, 127.0.0.1", h

    ws_echo(n, host)

    # a preview name sandbard does not know: its 404, not nginx's
    r, data = request(n, "GET", "/", preview_host("0b8e2f4c-1d2a-4c3b-9e8f-7a6b5c4d3e2f", domain=PREVIEW_DOMAIN))
    assert r.status == 404 and json.loads(data)["error"]["code"] == "not_found"
    r = api.get("/health")
    assert r.status == 200
    api.close()


def test_wake_through_nginx(server_factory, nginx_front):
    """nginx's preview read timeout (180 s) outlasts the wake: the held POST
    gets the app's answer, not nginx's 502/504, and the sandbox starts once."""
    srv, n = front(server_factory, nginx_front)
    api = n.api_client(timeout=120)
    sid, host = start_app(n, api, domain=PREVIEW_DOMAIN, idle_action="stop")
    stop(api, sid)
    payload = bytes(range(256)) * 4096
    r, data = request(n, "POST", "/sha", host, body=payload, timeout=120)
    assert (r.status, data) == (200, hashlib.sha256(payload).hexdigest().encode())
    assert status(api, sid) == "running" and starts(srv, sid) == 1
    api.close()
