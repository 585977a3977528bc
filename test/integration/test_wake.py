"""Wake on request against a real app in a real sandbox: a request for a
stopped sandbox whose auto_wake is on is held while the sandbox starts (once
however many wait) and its service comes back, then forwarded as if nothing
had happened; auto_wake off answers 409; exec wakes it too; a client that
leaves mid-wake leaves the wake going; preview traffic and an open WebSocket
are activity that keeps an idle_action stop sandbox up."""
import concurrent.futures
import hashlib
import json
import os
import socket
import time

from commands_util import execute
from harness import pg
from harness.wait import until
from sandboxes import templates_env
from preview_util import preview_host, request, start_app, ws_frame, ws_read


def status(c, sid):
    r = c.get(f"/api/sandboxes/{sid}")
    assert r.status == 200, r
    return r.json["status"]


def stop(c, sid):
    r = c.post(f"/api/sandboxes/{sid}/stop", timeout=60)
    assert r.status == 200 and r.json["status"] == "stopped", r


def starts(srv, sid):
    """How many times the sandbox moved stopped -> starting."""
    out = pg.psql(f"SELECT count(*) FROM sandbox_events WHERE sandbox_id = '{sid}' "
                  "AND from_status = 'stopped' AND to_status = 'starting'", url=srv.database_url)
    return int(out.strip())


def test_a_post_wakes_its_sandbox_and_gets_the_apps_answer(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c, idle_action="stop")
    assert c.get(f"/api/sandboxes/{sid}").json["auto_wake"] is True
    stop(c, sid)

    payload = os.urandom(1 << 20)
    r, data = request(srv, "POST", "/sha", host, body=payload)
    assert (r.status, data) == (200, hashlib.sha256(payload).hexdigest().encode())
    assert status(c, sid) == "running"
    assert starts(srv, sid) == 1
    r, data = request(srv, "POST", "/echo", host, body=b"again")
    assert (r.status, data) == (200, b"again")


def test_twenty_waiting_requests_start_it_once(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c, idle_action="stop")
    stop(c, sid)

    def one(i):
        r, data = request(srv, "GET", "/hello", host, timeout=90)
        return r.status, data
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        got = list(pool.map(one, range(20)))
    assert got == [(200, b"hello from the app")] * 20, got
    assert starts(srv, sid) == 1
    assert status(c, sid) == "running"


def test_auto_wake_off_answers_409_json_or_html(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c, idle_action="stop", auto_wake=False)
    assert c.get(f"/api/sandboxes/{sid}").json["auto_wake"] is False
    stop(c, sid)
    r, data = request(srv, "GET", "/hello", host)
    assert r.status == 409 and r.getheader("Content-Type") == "application/json"
    err = json.loads(data)["error"]
    assert err["code"] == "sandbox_not_running" and "auto_wake is off" in err["message"]
    r, data = request(srv, "GET", "/hello", host, headers={"Accept": "text/html,*/*"})
    assert r.status == 409 and r.getheader("Content-Type").startswith("text/html") and b"<h1>409</h1>" in data
    r = execute(c, sid, "echo hi")
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_running", r
    assert status(c, sid) == "stopped" and starts(srv, sid) == 0

    # PATCH turns it on: the next request wakes it
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"auto_wake": True})
    assert r.status == 200 and r.json["auto_wake"] is True, r
    r, data = request(srv, "GET", "/hello", host)
    assert (r.status, data) == (200, b"hello from the app")

    # the default follows idle_action; a bad value is 400
    r = c.post("/api/sandboxes", json={"template": "plain", "auto_wake": "yes"})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_auto_wake", r
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"auto_wake": 1})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_auto_wake", r


def test_exec_wakes_a_stopped_sandbox(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "plain", "idle_action": "stop"}, timeout=120)
    assert r.status == 201 and r.json["auto_wake"] is True, r
    sid = r.json["id"]
    r = c.post("/api/sandboxes", json={"template": "plain"}, timeout=120)
    assert r.status == 201 and r.json["auto_wake"] is False, r  # idle_action expire: off
    assert execute(c, sid, "echo kept > /tmp/k").status == 200
    stop(c, sid)
    r = execute(c, sid, "echo woken")
    assert r.status == 200 and r.json["stdout"] == "woken\n", r
    assert status(c, sid) == "running" and starts(srv, sid) == 1
    # files wake it too
    stop(c, sid)
    r = c.get(f"/api/sandboxes/{sid}/files?path=/tmp")
    assert r.status == 200, r
    assert status(c, sid) == "running" and starts(srv, sid) == 2


def test_a_client_leaving_mid_wake_leaves_the_wake_going(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c, idle_action="stop")
    stop(c, sid)
    for _ in range(3):
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        s.sendall(f"POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhello".encode())
        s.close()
    until(lambda: status(c, sid) == "running", timeout=60, what="the wake to finish without its client")
    assert starts(srv, sid) == 1
    # running, its service coming back: a request now is no wake, so it waits here
    until(lambda: request(srv, "GET", "/hello", host)[1] == b"hello from the app", timeout=30,
          what="the app back")
    assert starts(srv, sid) == 1
    assert c.get("/health").status == 200


def quick_idler(server_factory):
    """The app in a sandbox stopped after 3 s without activity (set once the
    app answers: its start takes longer)."""
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c, idle_action="stop")
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"idle_timeout": 3})
    assert r.status == 200, r
    return srv, c, sid, host


def test_preview_traffic_is_activity(server_factory):
    srv, c, sid, host = quick_idler(server_factory)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        r, _ = request(srv, "GET", "/hello", host)
        assert r.status == 200
        time.sleep(1)
    assert status(c, sid) == "running"
    until(lambda: status(c, sid) == "stopped", timeout=30, what="the idle stop once quiet")


def test_an_open_websocket_keeps_its_sandbox_awake(server_factory):
    srv, c, sid, host = quick_idler(server_factory)
    s = socket.create_connection((srv.host, srv.port), timeout=20)
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    time.sleep(8)  # quiet, well past its idle timeout
    assert status(c, sid) == "running"
    s.sendall(ws_frame(b"still here"))
    assert ws_read(s) == (1, b"still here")
    s.close()
    until(lambda: status(c, sid) == "stopped", timeout=30, what="the idle stop once the socket closed")
    assert preview_host(sid) == host


def test_a_woken_port_goes_when_its_service_is_ready_else_when_it_holds(server_factory):
    """Three ports of one sandbox held by one wake: a published one a service
    declares goes when the agent says the service is ready; a published one
    no service declares, when a connection to it stays open (the fallback);
    one through the agent, when the agent's connect succeeds."""
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, declared = start_app(srv, c, idle_action="stop", ports=[8000, 8002])
    hosts = {8000: declared}
    for port in (8002, 8001):  # services without "port": 8001 is not published
        r = c.post(f"/api/sandboxes/{sid}/commands",
                   json={"command": ["python3", "/tmp/app.py", str(port)], "service": True})
        assert r.status == 201, r
        hosts[port] = preview_host(sid, port)
        until(lambda: request(srv, "GET", "/hello", hosts[port])[0].status == 200, timeout=30,
              what=f"the app on {port}")
    stop(c, sid)
    mark = srv.log_mark()

    def one(port):
        r, data = request(srv, "POST", "/echo", hosts[port], body=b"port %d" % port, timeout=90)
        return r.status, data
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        got = dict(zip(hosts, pool.map(one, hosts)))
    assert got == {p: (200, b"port %d" % p) for p in hosts}, got
    assert starts(srv, sid) == 1
    log = srv.log_text()[mark:]
    assert f"sandbox={sid} preview port 8000: service " in log and " is ready (the agent's probe)" in log, log
    assert f"sandbox={sid} preview port 8002: no service declares it" in log, log
    assert f"sandbox={sid} preview port 8001: through the agent" in log, log
    assert "preview port 8000: no service" not in log
