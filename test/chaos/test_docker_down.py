"""dockerd stopped under a running sandbard (a package upgrade without
live-restore): every request that needs Docker answers 503 docker_unavailable
with Retry-After within a second, creates leave nothing half-made, and when
dockerd is back every sandbox's status is made true, `idle_action: none`
sandboxes are started again and their commands' recorded output is readable."""
import time

from harness import pg
from chaos_util import assert_docker_unavailable, create, exec_when_back
from sandboxes import wait_status

FAST = 1.0  # seconds: the bound for an answer while Docker is down


def test_docker_down_answers_503_fast_then_statuses_are_made_true(local_dockerd, on_dockerd):
    srv = on_dockerd(local_dockerd)
    c = srv.client()
    keep = create(c, "keep", idle_action="none", auto_wake=True)
    plain = create(c, "plain", auto_wake=True)
    r = c.post(f"/api/sandboxes/{plain}/commands", json={"command": "echo before"}, timeout=30)
    assert r.status == 201, r
    detached = r.json["id"]
    time.sleep(0.5)

    local_dockerd.stop()
    try:
        # dockerd stopped both containers on its way out, and said so
        wait_status(c, plain, "stopped", timeout=10)
        wait_status(c, keep, "stopped", timeout=10)
        for method, path, body in (
            ("POST", f"/api/sandboxes/{plain}/execute", {"command": "true"}),  # a wake
            ("POST", "/api/sandboxes", {"template": "base", "name": "during"}),
            ("POST", f"/api/sandboxes/{keep}/start", None),
            ("GET", f"/api/sandboxes/{plain}/files/content?path=/etc/hostname", None),  # a wake
            ("DELETE", f"/api/sandboxes/{plain}", None),
        ):
            t = time.monotonic()
            r = c.request(method, path, json=body, timeout=10)
            took = time.monotonic() - t
            assert_docker_unavailable(r)
            assert took < FAST, (method, path, took)
        # the create left no row behind that claims a sandbox
        rows = pg.psql("SELECT name, status FROM sandboxes WHERE name = 'during'", url=srv.database_url)
        assert rows.strip() in ("", "during|error"), rows
        # reads that need no Docker still answer
        assert c.get(f"/api/sandboxes/{plain}").status == 200
    finally:
        local_dockerd.start()

    # the restart stopped both containers: `plain` is stopped, `keep` started again
    wait_status(c, plain, "stopped", timeout=30)
    sb = wait_status(c, keep, "running", timeout=60)
    r = c.post(f"/api/sandboxes/{keep}/execute", json={"command": "echo after"}, timeout=60)
    assert r.status == 200 and r.json["stdout"] == "after\n", r
    # its record is kept; its output lived in the stopped container's agent
    r = c.get(f"/api/sandboxes/{plain}/commands/{detached}", timeout=30)
    assert r.status == 200 and r.json["exit_code"] == 0, r
    r = c.get(f"/api/sandboxes/{plain}/commands/{detached}/logs", timeout=30)
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_running", r
    assert sb["status"] == "running"


def test_docker_restart_with_live_restore_keeps_sandboxes_and_output(local_dockerd, on_dockerd):
    """With live-restore, containers run on while dockerd restarts: statuses
    stay `running`, requests during the gap get 503, and afterwards the agent
    channel reconnects and a detached command's output is still there."""
    local_dockerd.live_restore = True
    local_dockerd.restart()
    try:
        srv = on_dockerd(local_dockerd)
        c = srv.client()
        sid = create(c, "lr")
        r = c.post(f"/api/sandboxes/{sid}/commands", json={"command": "echo kept; sleep 600"}, timeout=30)
        assert r.status == 201, r
        cmd = r.json["id"]
        local_dockerd.stop()
        try:
            t = time.monotonic()
            r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": "true"}, timeout=10)
            assert_docker_unavailable(r)
            assert time.monotonic() - t < FAST
        finally:
            local_dockerd.start()
        assert c.get(f"/api/sandboxes/{sid}").json["status"] == "running"
        exec_when_back(c, sid, "back")
        r = c.get(f"/api/sandboxes/{sid}/commands/{cmd}/logs", timeout=30)
        assert r.status == 200 and b"kept" in r.body, r
    finally:
        local_dockerd.live_restore = False
        local_dockerd.restart()
