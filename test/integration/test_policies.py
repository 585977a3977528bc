"""What a create asks for (cpu, memory, labels, extra ports, idle timeout and
action, lifetime) applied to the container and recorded; PATCH applied live
and kept across stop and start; the idle actions (expire, stop, none), a
keepalive and the hard lifetime carried out by the reaper; the list's
filters and pages. Bad values are 400s that name the field, with nothing
made."""
import time

import pytest

from commands_util import execute
from harness import docker, pg
from harness.wait import until
from sandboxes import check_shape, templates_env


def create(c, **body):
    r = c.post("/api/sandboxes", json={"template": "plain", **body}, timeout=120)
    assert r.status == 201, r
    check_shape(r.json)
    return r.json


def rows(srv):
    return pg.psql("SELECT count(*) FROM sandboxes", url=srv.database_url).strip()


def test_create_asks_and_gets(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sb = create(c, cpu=1.5, memory="256m", labels={"team": "a", "app/tier": "web"}, ports=[7000, 7001],
                idle_timeout=30, idle_action="stop", ttl="1h", env_vars={"K": "v"})
    host = docker.inspect(sb["container_id"])["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000 and host["Memory"] == 256 << 20 and host["MemorySwap"] == 256 << 20
    assert sb["cpu"] == 1.5 and sb["memory"] == 256 << 20 and sb["idle_timeout"] == 30
    assert sb["idle_action"] == "stop" and sb["labels"] == {"team": "a", "app/tier": "web"}
    assert sb["keepalive_until"] is None
    created = time.mktime(time.strptime(sb["created_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    ends = time.mktime(time.strptime(sb["ends_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert 3599 <= ends - created <= 3601
    expires = time.mktime(time.strptime(sb["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert 29 <= expires - created <= 31
    published = docker.inspect(sb["container_id"])["NetworkSettings"]["Ports"]
    mapped = {p["container_port"]: p["host_port"] for p in sb["port_mappings"]}
    assert set(mapped) == {7000, 7001}
    assert all(mapped[p] == int(published[f"{p}/tcp"][0]["HostPort"]) for p in mapped)
    # the defaults: the template's (none here) then the server's limits
    plain = create(c)
    assert plain["cpu"] == 2.0 and plain["memory"] == 2 << 30 and plain["idle_timeout"] == 900
    assert plain["idle_action"] == "expire" and plain["ends_at"] is None and plain["labels"] == {}
    for sid in (sb["id"], plain["id"]):
        assert c.delete(f"/api/sandboxes/{sid}").status == 204


@pytest.mark.parametrize("body,code", [
    ({"cpu": 0}, "invalid_cpu"), ({"cpu": -1}, "invalid_cpu"), ({"cpu": "2"}, "invalid_cpu"),
    ({"cpu": 99}, "invalid_cpu"), ({"memory": "lots"}, "invalid_memory"), ({"memory": 0}, "invalid_memory"),
    ({"memory": "99g"}, "invalid_memory"), ({"memory": 1024}, "invalid_memory"),
    ({"idle_action": "sleep"}, "invalid_idle_action"), ({"idle_timeout": -5}, "invalid_idle_timeout"),
    ({"idle_timeout": "soon"}, "invalid_idle_timeout"), ({"ttl": 0}, "invalid_ttl"), ({"ttl": "1y"}, "invalid_ttl"),
    ({"ports": [0]}, "invalid_ports"), ({"ports": ["80"]}, "invalid_ports"), ({"ports": 80}, "invalid_ports"),
    ({"ports": list(range(2000, 2040))}, "invalid_ports"), ({"labels": {"": "x"}}, "invalid_labels"),
    ({"labels": {"k": 1}}, "invalid_labels"), ({"labels": {"a b": "x"}}, "invalid_labels"),
    ({"labels": ["x"]}, "invalid_labels"), ({"env_vars": {"A=B": "x"}}, "invalid_env"),
])
def test_bad_create_values_name_the_field(server_factory, body, code):
    srv = server_factory(env=templates_env())
    r = srv.client().post("/api/sandboxes", json={"template": "plain", **body})
    assert r.status == 400 and r.json["error"]["code"] == code, r
    assert rows(srv) == "0"


def test_patch_applies_live_and_survives_stop_start(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sb = create(c, env_vars={"KEEP": "1", "OVER": "old"}, labels={"a": "1"})
    sid, cid = sb["id"], sb["container_id"]
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={
        "memory": "300m", "cpu": 0.5, "name": "renamed", "labels": {"b": "2"},
        "env_vars": {"OVER": "new", "ADDED": "yes"}, "idle_timeout": 120, "idle_action": "none"})
    assert r.status == 200, r
    got = r.json
    assert (got["name"], got["labels"], got["memory"], got["cpu"]) == ("renamed", {"b": "2"}, 300 << 20, 0.5)
    assert got["env_vars"] == {"KEEP": "1", "OVER": "new", "ADDED": "yes"}
    assert (got["idle_timeout"], got["idle_action"]) == (120, "none")
    last = time.mktime(time.strptime(got["last_activity"][:19], "%Y-%m-%dT%H:%M:%S"))
    expires = time.mktime(time.strptime(got["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert 119 <= expires - last <= 121
    host = docker.inspect(cid)["HostConfig"]
    assert (host["Memory"], host["NanoCpus"]) == (300 << 20, 500_000_000)
    out = execute(c, sid, "echo $KEEP $OVER $ADDED").json["stdout"]
    assert out == "1 new yes\n", out
    assert c.post(f"/api/sandboxes/{sid}/stop").status == 200
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"memory": "320m"})  # a stopped container too
    assert r.status == 200 and r.json["status"] == "stopped"
    assert c.post(f"/api/sandboxes/{sid}/start").status == 200
    host = docker.inspect(cid)["HostConfig"]
    assert (host["Memory"], host["NanoCpus"]) == (320 << 20, 500_000_000)
    assert c.get(f"/api/sandboxes/{sid}").json["memory"] == 320 << 20
    # bad changes: named, nothing changed
    for body, code in (({"memory": "1k"}, "invalid_memory"), ({"cpu": 100}, "invalid_cpu"),
                       ({"status": "running"}, "invalid_body"), ({"name": ""}, "invalid_name"),
                       ({"idle_action": "x"}, "invalid_idle_action"), ([], "invalid_body"),
                       ({"env_vars": {"A": "x\u0000"}}, "invalid_env"),
                       ({"labels": {"a": "\u0000"}}, "invalid_labels")):
        r = c.request("PATCH", f"/api/sandboxes/{sid}", json=body)
        assert r.status == 400 and r.json["error"]["code"] == code, (body, r)
    assert c.get(f"/api/sandboxes/{sid}").json["name"] == "renamed"
    r = c.request("PATCH", "/api/sandboxes/00000000-0000-4000-8000-000000000000", json={"name": "x"})
    assert r.status == 404
    assert c.delete(f"/api/sandboxes/{sid}").status == 204
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"name": "x"})
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_live"


def test_idle_actions_keepalive_and_lifetime(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_REAPER_INTERVAL="1s", SANDBAR_MAX_KEEPALIVE="1h"))
    c = srv.client()
    # the ones that idle are made last, each then used at once: the reaper
    # may come for them from 2 s on
    ends = create(c, ttl=3)
    extended = create(c, ttl=3)
    # extended at once: the creates below may take longer than its 3 s under load
    r = c.post(f"/api/sandboxes/{extended['id']}/extend", json={"seconds": 600})
    assert r.status == 200 and r.json["ends_at"] > extended["ends_at"], r
    none = create(c, idle_timeout=1, idle_action="none")
    kept = create(c, idle_timeout=2, idle_action="expire")
    r = c.post(f"/api/sandboxes/{kept['id']}/keepalive", json={"seconds": 60})
    assert r.status == 200 and r.json["keepalive_until"] is not None, r
    stop = create(c, idle_timeout=2, idle_action="stop")
    assert execute(c, stop["id"], "echo mine > f").status == 200
    expire = create(c, idle_timeout=2, idle_action="expire")
    for body in ({"seconds": 0}, {"seconds": "5"}, {}, {"seconds": 7200}):
        r = c.post(f"/api/sandboxes/{kept['id']}/keepalive", json=body)
        assert r.status == 400 and r.json["error"]["code"] == "invalid_seconds", (body, r)

    def status(sb):
        return c.get(f"/api/sandboxes/{sb['id']}").json

    # ends is kept busy: its lifetime ends all the same
    deadline = time.monotonic() + 30
    while status(ends)["status"] == "running":
        assert time.monotonic() < deadline, "the lifetime did not end"
        c.post(f"/api/sandboxes/{ends['id']}/heartbeat")
        time.sleep(0.3)
    gone = status(ends)
    assert gone["status"] == "expired" and gone["status_reason"] == "its lifetime ended"
    until(lambda: not docker.exists(ends["container_id"]), what="the ended sandbox's container to go")
    until(lambda: status(stop)["status"] == "stopped", timeout=30, what="the idle stop")
    stopped = status(stop)
    assert stopped["status_reason"] == "idle for longer than 2s"
    assert docker.exists(stop["container_id"]) and not docker.running(stop["container_id"])
    until(lambda: status(expire)["status"] == "expired", timeout=30, what="the idle expiry")
    until(lambda: not docker.exists(expire["container_id"]), what="the expired sandbox's container to go")
    # the others are still up: none never idles, kept and extended hold
    for sb in (none, kept, extended):
        assert status(sb)["status"] == "running", sb["id"]
    assert c.post(f"/api/sandboxes/{stop['id']}/start").status == 200
    r = execute(c, stop["id"], "cat f")
    assert r.status == 200 and r.json["stdout"] == "mine\n"
    for sb in (stop, none, kept, extended):
        assert c.delete(f"/api/sandboxes/{sb['id']}").status == 204


def test_list_filters_and_pages(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    a = create(c, labels={"team": "a", "tier": "web"})
    b = create(c, labels={"team": "a"})
    d = create(c, labels={"team": "b"})
    assert c.post(f"/api/sandboxes/{b['id']}/stop").status == 200
    r = c.get("/api/sandboxes")
    assert [s["id"] for s in r.json] == [d["id"], b["id"], a["id"]] and r.header("X-Total-Count") == "3"

    def ids(query):
        r = c.get(f"/api/sandboxes?{query}")
        assert r.status == 200, r
        return [s["id"] for s in r.json], int(r.header("X-Total-Count"))

    assert ids("status=running") == ([d["id"], a["id"]], 2)
    assert ids("status=stopped") == ([b["id"]], 1)
    assert ids("label=team:a") == ([b["id"], a["id"]], 2)
    assert ids("label=team:a,tier:web") == ([a["id"]], 1)
    assert ids("label=team:a&status=running") == ([a["id"]], 1)
    assert ids("limit=2") == ([d["id"], b["id"]], 3)
    assert ids("limit=2&offset=2") == ([a["id"]], 3)
    assert ids("offset=5") == ([], 3)
    assert c.delete(f"/api/sandboxes/{d['id']}").status == 204
    assert ids("status=deleted") == ([d["id"]], 1)
    for q, code in (("status=sleeping", "invalid_status"), ("status=warm", "invalid_status"),
                    ("label=team", "invalid_label"), ("limit=0", "invalid_limit"), ("limit=x", "invalid_limit"),
                    ("limit=5000", "invalid_limit"), ("offset=-1", "invalid_offset")):
        r = c.get(f"/api/sandboxes?{q}")
        assert r.status == 400 and r.json["error"]["code"] == code, (q, r)
    for sb in (a, b):
        assert c.delete(f"/api/sandboxes/{sb['id']}").status == 204
