"""The monza sandbox routes against the real dockerd and PostgreSQL: exact
shapes, Docker objects really made and really gone, bad input refused with
nothing left behind."""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from harness import docker, pg
from sandboxes import TEMPLATES, check_shape, templates_env, wait_status


def rows(server):
    out = pg.psql("SELECT id, status FROM sandboxes ORDER BY created_at", url=server.database_url)
    return [tuple(l.split("|")) for l in out.splitlines() if l]


def test_monza_flow_base_template(client, server):
    r = client.post("/api/sandboxes", json={"template": "base"})
    assert r.status == 201, r
    sb = r.json
    check_shape(sb)
    assert sb["status"] == "running"
    assert sb["name"] == "sandbox-base"
    assert sb["template"] == "base"
    assert sb["image"] == "sandbar/base:latest"
    assert sb["workspace_mount"] == "/workspace"
    assert sb["devcontainer_config"]["image"] == "sandbar/base:latest"
    assert sb["status_reason"] is None
    assert sb["deleted_at"] is None
    assert "GNU bash" in (sb["setup_output"] or "")  # postCreateCommand ran
    assert [p["container_port"] for p in sb["port_mappings"]] == [8080]
    pm = sb["port_mappings"][0]
    assert pm["sandbox_id"] == sb["id"] and 1024 <= pm["host_port"] <= 65535

    # the container: labelled, named, hardened, mounted
    info = docker.inspect(sb["container_id"])
    assert info["State"]["Running"]
    labels = info["Config"]["Labels"]
    assert labels["sandbar.managed"] == "true" and labels["sandbar.sandbox"] == sb["id"]
    assert info["Name"] == "/sandbar-" + sb["id"]
    hc = info["HostConfig"]
    assert hc["Memory"] == 2 * 1024**3 and hc["NanoCpus"] == 2 * 10**9 and hc["PidsLimit"] == 1024
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["CapDrop"] == ["ALL"] and "NET_RAW" not in hc["CapAdd"] and "CHOWN" in hc["CapAdd"]
    assert hc["Privileged"] is False
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/workspace"]["Type"] == "volume"
    assert mounts["/workspace"]["Name"] == "sandbar-ws-" + sb["id"]
    vol = docker.inspect(mounts["/workspace"]["Name"], kind="volume")
    assert vol["Labels"]["sandbar.sandbox"] == sb["id"]

    # get and list
    r = client.get(f"/api/sandboxes/{sb['id']}")
    assert r.status == 200 and r.json == sb
    r = client.get("/api/sandboxes")
    assert r.status == 200 and [s["id"] for s in r.json] == [sb["id"]]

    # heartbeat pushes expiry out
    time.sleep(0.05)
    r = client.post(f"/api/sandboxes/{sb['id']}/heartbeat")
    assert r.status == 204 and r.body == b""
    after = client.get(f"/api/sandboxes/{sb['id']}").json
    assert after["expires_at"] > sb["expires_at"] and after["last_activity"] > sb["last_activity"]

    # delete: container and volume gone, row soft-deleted
    r = client.delete(f"/api/sandboxes/{sb['id']}")
    assert r.status == 204 and r.body == b""
    assert not docker.exists(sb["container_id"])
    assert docker.inspect("sandbar-ws-" + sb["id"], kind="volume") is None
    gone = client.get(f"/api/sandboxes/{sb['id']}").json
    assert gone["status"] == "deleted" and gone["deleted_at"] is not None
    assert client.get("/api/sandboxes").json == []
    r = client.delete(f"/api/sandboxes/{sb['id']}")
    assert r.status == 404 and r.json["error"]["code"] == "not_found"
    r = client.post(f"/api/sandboxes/{sb['id']}/heartbeat")
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_live"


def test_ports_env_limits_and_list_order(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "web", "name": "w1", "env_vars": {"GREETING": "hi there"}})
    assert r.status == 201, r
    sb = r.json
    assert sb["name"] == "w1" and sb["env_vars"] == {"GREETING": "hi there"}
    ports = {p["container_port"]: p["host_port"] for p in sb["port_mappings"]}
    assert set(ports) == {8080, 9090}
    # the server started by postStartCommand answers on the published port
    deadline = time.monotonic() + 15
    body = b""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", ports[8080]), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                body = s.recv(100)
                if body.startswith(b"HTTP/1.0 200"):
                    break
        except OSError:
            pass
        time.sleep(0.2)
    assert body.startswith(b"HTTP/1.0 200"), body
    info = docker.inspect(sb["container_id"])
    env = info["Config"]["Env"]
    assert "GREETING=hi there" in env and "FROM_TEMPLATE=yes" in env
    assert info["HostConfig"]["Memory"] == 512 * 1000**2 or info["HostConfig"]["Memory"] == 512 * 1024**2
    assert info["HostConfig"]["NanoCpus"] == 10**9
    # the workspace belongs to the remote user
    r2 = c.post("/api/sandboxes", json={"template": "plain"})
    assert r2.status == 201, r2
    assert r2.json["workspace_mount"] == "/home/sandbox/work"
    info2 = docker.inspect(r2.json["container_id"])
    assert any(m["Type"] == "tmpfs" and m["Destination"] == "/scratch" for m in info2["Mounts"])
    # newest first
    assert [s["id"] for s in c.get("/api/sandboxes").json] == [r2.json["id"], sb["id"]]
    for s in (sb, r2.json):
        assert c.delete(f"/api/sandboxes/{s['id']}").status == 204


def test_wait_false_answers_202_creating(client):
    r = client.post("/api/sandboxes", json={"template": "base", "wait": False})
    assert r.status == 202, r
    check_shape(r.json)
    assert r.json["status"] == "creating" and r.json["container_id"] == ""
    sb = wait_status(client, r.json["id"], "running")
    assert docker.running(sb["container_id"])
    assert client.delete(f"/api/sandboxes/{sb['id']}").status == 204


def test_failing_setup_leaves_error_and_no_container(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "failing"})
    assert r.status == 500, r
    assert r.json["error"]["code"] == "sandbox_create_failed"
    [(sid, status)] = rows(srv)
    assert status == "error"
    assert sid in r.json["error"]["message"]
    sb = c.get(f"/api/sandboxes/{sid}").json
    assert "exited with code 7" in sb["status_reason"]
    assert "boom-out" in sb["setup_output"] and "boom-err" in sb["setup_output"]
    assert docker.ps(f"sandbar.sandbox={sid}") == []
    assert docker.volumes(f"sandbar.sandbox={sid}") == []


@pytest.mark.parametrize(
    "body,code",
    [
        ({"template": "nope"}, "unknown_template"),
        ({"template": "../devcontainers/base"}, "invalid_template"),
        ({"template": "base/.."}, "invalid_template"),
        ({"template": ".."}, "invalid_template"),
        ({"template": 7}, "invalid_body"),
        ({"name": ["x"]}, "invalid_body"),
        ({"name": "x" * 129, "template": "base"}, "invalid_name"),
        ({"template": "base", "wait": "yes"}, "invalid_body"),
        ({"template": "base", "env_vars": {"A": 1}}, "invalid_env"),
        ({"template": "base", "env_vars": {"A=B": "x"}}, "invalid_env"),
        ({"template": "base", "env_vars": ["A"]}, "invalid_env"),
        ({"template": "base", "env_vars": {"A": "x\u0000y"}}, "invalid_env"),
        ({"template": "base", "labels": {"team": "a\u0000b"}}, "invalid_labels"),
        ([1, 2], "invalid_body"),
    ],
)
def test_bad_create_bodies_leave_nothing(server, client, body, code):
    r = client.post("/api/sandboxes", json=body)
    assert r.status == 400, r
    assert r.json["error"]["code"] == code, r.json
    assert set(r.json) == {"error"} and set(r.json["error"]) == {"code", "message"}
    assert rows(server) == []


def test_bad_json_and_ids(server, client):
    r = client.post("/api/sandboxes", body=b'{"template": "base"', headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_json", r
    for path, method in [("/api/sandboxes/not-a-uuid", "GET"), ("/api/sandboxes/123", "DELETE"),
                         ("/api/sandboxes/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz/heartbeat", "POST")]:
        r = client.request(method, path)
        assert r.status == 400 and r.json["error"]["code"] == "invalid_id", (path, r)
    unknown = "00000000-0000-4000-8000-000000000000"
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/heartbeat")]:
        r = client.request(method, f"/api/sandboxes/{unknown}{path}")
        assert r.status == 404 and r.json["error"]["code"] == "not_found", (method, r)
    r = client.request("PUT", "/api/sandboxes")
    assert r.status == 405 and r.json["error"]["code"] == "method_not_allowed"
    r = client.get("/api/nothing-here")
    assert r.status == 404 and r.json["error"]["code"] == "not_found"
    assert rows(server) == []


def test_list_filters_longer_than_a_kilobyte_are_read_whole(server, client):
    # a bad status or label past the first kilobyte is still seen and named
    r = client.get("/api/sandboxes?status=" + "running," * 200 + "bogus")
    assert r.status == 400 and r.json["error"]["code"] == "invalid_status", r
    assert set(r.json) == {"error"} and set(r.json["error"]) == {"code", "message"}
    assert "'bogus'" in r.json["error"]["message"]
    r = client.get("/api/sandboxes?label=" + "team:a," * 200 + "nocolon")
    assert r.status == 400 and r.json["error"]["code"] == "invalid_label", r
    r = client.get("/api/sandboxes?status=" + "running," * 200 + "stopped")
    assert r.status == 200 and r.json == [], r


def test_default_template_is_go_and_name_follows_it(server_factory, tmp_path):
    # the test folder has no `go`: the default names it in the refusal
    srv = server_factory(env=templates_env())
    r = srv.client().post("/api/sandboxes", json={})
    assert r.status == 400 and r.json["error"]["code"] == "unknown_template"
    assert "'go'" in r.json["error"]["message"]
    # a folder whose `go` is the plain test template (the shipped one builds
    # a toolchain image for minutes): the default creates from it, and the
    # name follows whichever template was used
    plain = open(os.path.join(TEMPLATES, "plain", "devcontainer.json")).read()
    for name in ("go", "plain"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "devcontainer.json").write_text(plain)
    srv = server_factory(env={"DEVCONTAINERS_PATH": str(tmp_path)})
    c = srv.client()
    made = []
    for body, template, name in (({}, "go", "sandbox-go"), ({"template": "plain"}, "plain", "sandbox-plain"),
                                 ({"template": "plain", "name": "mine"}, "plain", "mine")):
        r = c.post("/api/sandboxes", json=body)
        assert r.status == 201, r
        made.append(r.json["id"])
        assert (r.json["template"], r.json["name"]) == (template, name), r.json
        assert c.get(f"/api/sandboxes/{r.json['id']}").json["name"] == name
    for sid in made:
        assert c.delete(f"/api/sandboxes/{sid}").status == 204


def test_build_template_builds_once_and_runs(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    results = []
    threads = [threading.Thread(target=lambda: results.append(c.__class__(srv.host, srv.port).post(
        "/api/sandboxes", json={"template": "built"}, timeout=300))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    try:
        assert [r.status for r in results] == [201, 201], results
        image = results[0].json["image"]
        assert image.startswith("sandbar/tpl-built:") and results[1].json["image"] == image
        out = subprocess.run(["docker", "exec", results[0].json["container_id"], "cat", "/etc/sandbar-built"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout == "from-args\n", out
        # two creates at once, one build
        assert srv.log_text().count("building image " + image) == 1
        for r in results:
            assert c.delete(f"/api/sandboxes/{r.json['id']}").status == 204
    finally:
        for r in results:
            if r.status == 201:
                docker.remove_image(r.json["image"])
                break


def test_missing_image_fails_cleanly(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "missing-image"})
    assert r.status == 500 and r.json["error"]["code"] == "sandbox_create_failed", r
    [(sid, status)] = rows(srv)
    sb = c.get(f"/api/sandboxes/{sid}").json
    assert sb["status"] == "error" and "not present" in sb["status_reason"]
    assert docker.ps(f"sandbar.sandbox={sid}") == [] and docker.volumes(f"sandbar.sandbox={sid}") == []


def test_image_command_runs_under_the_agent_as_the_image_user(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "image-cmd"}, timeout=300)
    try:
        assert r.status == 201, r
        cid = r.json["container_id"]
        info = docker.inspect(cid)
        assert info["Config"]["Entrypoint"] == ["/.sandbar/agent", "init", "--user", "sandbox", "--",
                                                "sleep", "infinity"]
        assert info["Config"]["User"] == "0:0"
        out = subprocess.run(["docker", "exec", cid, "ps", "-o", "pid=,user=,comm=", "-e"],
                             capture_output=True, text=True, timeout=30).stdout
        procs = {line.split()[2]: (line.split()[0], line.split()[1]) for line in out.strip().splitlines()}
        assert procs["agent"] == ("1", "root"), out
        assert procs["sleep"][1] == "sandbox", out
        assert c.delete(f"/api/sandboxes/{r.json['id']}").status == 204
    finally:
        if r.status == 201:
            docker.remove_image(r.json["image"])


def test_clients_gone_during_a_lookup(server, client):
    """Clients that close while GET /api/sandboxes/{id} looks an uncached id
    up: the lookup's answer finds no one waiting, and the server goes on."""
    for rnd in range(5):
        ids = [f"00000000-0000-4000-8000-{rnd:04d}{i:08d}" for i in range(4)]
        socks = []
        for k in range(120):
            s = socket.create_connection((server.host, server.port), timeout=5)
            s.sendall(f"GET /api/sandboxes/{ids[k % len(ids)]} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(s)
        for s in socks:
            s.close()
        r = client.get("/health")
        assert r.status == 200, r
    assert server.alive()
    r = client.get(f"/api/sandboxes/{ids[0]}")
    assert r.status == 404 and r.json["error"]["code"] == "not_found", r
