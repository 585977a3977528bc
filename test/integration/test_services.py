"""Services against the real dockerd: a detached command started with
"service": true comes back after every start and restart under the same
command id, its port's readiness is reported and its server answers on the
published port; a removed service is stopped and not started again; bad input
names the field; a sandbox keeps at most 32 services."""
import time

from commands_util import execute
from harness.wait import until
from sandboxes import UUID, http_get, templates_env

SERVER = "cd /tmp && exec python3 -m http.server 8000"


def host_port(sb, container_port):
    return {p["container_port"]: p["host_port"] for p in sb["port_mappings"]}[container_port]


def command(c, sid, cid):
    r = c.get(f"/api/sandboxes/{sid}/commands/{cid}")
    assert r.status == 200, r
    return r.json


def servers(c, sid):
    """The sandbox's http.server processes."""
    r = execute(c, sid, ["ps", "-eo", "args"])
    assert r.status == 200, r
    return [p for p in r.json["stdout"].splitlines() if "http.server" in p and "ps -eo" not in p]


def ready_again(c, sid, cid, sb, what):
    """Waits for the service to run and be ready; checks it answers on the
    sandbox's published port (which a start may have changed)."""
    doc = until(lambda: (lambda d: d if d["status"] == "running" and d["ready"] else None)(command(c, sid, cid)),
                timeout=30, what=what)
    until(lambda: http_get(host_port(sb, 8000)).startswith(b"HTTP/1.0 200"), timeout=10,
          what=f"the service answering on its published port ({what})")
    return doc


def test_service_back_after_stop_start_and_restart(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_STOP_GRACE="2s"))
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "plain", "ports": [8000]}, timeout=120)
    assert r.status == 201, r
    sb = r.json
    sid = sb["id"]
    r = c.post(f"/api/sandboxes/{sid}/commands", json={"command": SERVER, "service": True, "port": 8000})
    assert r.status == 201, r
    assert set(r.json) == {"id", "pid", "started_at"} and UUID.match(r.json["id"])
    cid = r.json["id"]
    doc = command(c, sid, cid)
    assert doc["service"] is True and doc["port"] == 8000 and doc["status"] == "running"
    assert doc["ready"] in (False, True)
    first = ready_again(c, sid, cid, sb, "the service ready after its start")
    assert first["pid"] == r.json["pid"]

    r = c.post(f"/api/sandboxes/{sid}/stop")
    assert r.status == 200 and r.json["status"] == "stopped", r
    doc = command(c, sid, cid)  # its process went with the stop
    assert doc["status"] == "lost" and doc["service"] is True and doc["ready"] is False, doc

    r = c.post(f"/api/sandboxes/{sid}/start")
    assert r.status == 200 and r.json["status"] == "running", r
    sb = r.json
    doc = ready_again(c, sid, cid, sb, "the service ready after the start")
    assert doc["id"] == cid and doc["started_at"] > first["started_at"]
    assert doc["exit_code"] is None and doc["ended_at"] is None
    listed = c.get(f"/api/sandboxes/{sid}/commands").json
    assert [(x["id"], x["status"], x["ready"]) for x in listed] == [(cid, "running", True)]
    assert len(servers(c, sid)) == 1

    r = c.post(f"/api/sandboxes/{sid}/restart")
    assert r.status == 200 and r.json["status"] == "running", r
    sb = r.json
    again = ready_again(c, sid, cid, sb, "the service ready after the restart")
    assert again["started_at"] > doc["started_at"]
    assert len(servers(c, sid)) == 1
    # its logs are the current run's
    r = c.get(f"/api/sandboxes/{sid}/commands/{cid}/logs", headers={"Accept": "application/x-ndjson"})
    assert r.status == 200, r

    # removed: stopped now, and not back after a restart
    r = c.delete(f"/api/sandboxes/{sid}/commands/{cid}")
    assert r.status == 204, r
    doc = until(lambda: (lambda d: d if d["status"] != "running" else None)(command(c, sid, cid)),
                timeout=15, what="the removed service to end")
    assert doc["status"] == "exited" and doc["signal"] == 15 and doc["service"] is False, doc
    assert "ready" not in doc
    until(lambda: not http_get(host_port(sb, 8000)), what="the port to close")
    r = c.delete(f"/api/sandboxes/{sid}/commands/{cid}")
    assert r.status == 409 and r.json["error"]["code"] == "not_a_service", r
    r = c.post(f"/api/sandboxes/{sid}/restart")
    assert r.status == 200, r
    sb = r.json
    time.sleep(1)  # a service would be started by the agent's init at once
    assert servers(c, sid) == []
    assert not http_get(host_port(sb, 8000))
    doc = command(c, sid, cid)
    assert doc["status"] == "exited" and doc["service"] is False
    assert c.delete(f"/api/sandboxes/{sid}").status == 204


def test_service_bad_input_and_limits(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "plain"}, timeout=120)
    assert r.status == 201, r
    sid = r.json["id"]
    url = f"/api/sandboxes/{sid}/commands"
    for body, code, field in (
            ({"command": "true", "port": 8000}, "invalid_port", "'port'"),
            ({"command": "true", "service": False, "port": 8000}, "invalid_port", "'port'"),
            ({"command": "true", "service": True, "port": 0}, "invalid_port", "'port'"),
            ({"command": "true", "service": True, "port": 70000}, "invalid_port", "'port'"),
            ({"command": "true", "service": "yes"}, "invalid_service", "'service'"),
            ({"command": "true", "service": True, "stdin": "x"}, "invalid_stdin", "'stdin'")):
        r = c.post(url, json=body)
        assert r.status == 400 and r.json["error"]["code"] == code, (body, r)
        assert field in r.json["error"]["message"], r
    r = execute(c, sid, "true", service=True)
    assert r.status == 400 and r.json["error"]["code"] == "invalid_service", r
    # a service without a port: ready is null
    r = c.post(url, json={"command": ["sleep", "1000"], "service": True})
    assert r.status == 201, r
    svc = r.json["id"]
    doc = command(c, sid, svc)
    assert doc["service"] is True and doc["port"] is None and doc["ready"] is None
    # a plain command is not removed; an unknown one is not found
    r = c.post(url, json={"command": ["sleep", "1000"]})
    plain = r.json["id"]
    r = c.delete(f"{url}/{plain}")
    assert r.status == 409 and r.json["error"]["code"] == "not_a_service", r
    r = c.delete(f"{url}/00000000-0000-4000-8000-000000000000")
    assert r.status == 404, r
    # at most 32 services per sandbox
    for _ in range(31):
        r = c.post(url, json={"command": ["sleep", "1000"], "service": True})
        assert r.status == 201, r
    r = c.post(url, json={"command": ["sleep", "1000"], "service": True})
    assert r.status == 429 and r.json["error"]["code"] == "too_many_services", r
    assert c.delete(f"{url}/{svc}").status == 204
    r = c.post(url, json={"command": ["sleep", "1000"], "service": True})
    assert r.status == 201, r
    # a stopped sandbox's services are removed once it runs again
    assert c.post(f"/api/sandboxes/{sid}/stop").status == 200
    r = c.delete(f"{url}/{r.json['id']}")
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_running", r
    assert c.delete(f"/api/sandboxes/{sid}").status == 204
