"""A remote Docker host (DOCKER_HOST=tcp://…, our private dockerd across a
network namespace): cut mid-stream (every packet dropped), requests get 503
docker_unavailable within the configured bounds instead of hanging, and all
is well again once the path heals, without restarting sandbard."""
import time

from chaos_util import assert_docker_unavailable, create, exec_when_back

CONNECT_MS, PROBE_MS = 500, 500
# a request may wait for one probe interval and one probe timeout, plus slack
BOUND = (CONNECT_MS + 2 * PROBE_MS) / 1000 + 1.0


def test_remote_docker_cut_and_healed(remote_dockerd, on_dockerd):
    srv = on_dockerd(remote_dockerd, env={
        "SANDBAR_DOCKER_CONNECT_TIMEOUT": f"{CONNECT_MS}ms",
        "SANDBAR_DOCKER_PROBE_INTERVAL": f"{PROBE_MS}ms",
        "SANDBAR_DOCKER_PROBE_TIMEOUT": f"{PROBE_MS}ms",
    })
    c = srv.client()
    sid = create(c, "far")
    r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": "echo near"}, timeout=30)
    assert r.status == 200 and r.json["stdout"] == "near\n", r
    # a command streaming when the path is cut
    remote_dockerd.cut()
    try:
        for method, path, body in (
            ("POST", f"/api/sandboxes/{sid}/execute", {"command": "echo cut"}),
            ("POST", "/api/sandboxes", {"template": "base", "name": "during"}),
            ("POST", f"/api/sandboxes/{sid}/stop", None),
        ):
            t = time.monotonic()
            r = c.request(method, path, json=body, timeout=30)
            took = time.monotonic() - t
            assert_docker_unavailable(r)
            assert took < BOUND, (method, path, took)
        assert srv.wait_log("docker: unreachable", timeout=5)
        assert c.get(f"/api/sandboxes/{sid}").json["status"] == "running"
    finally:
        remote_dockerd.heal()
    exec_when_back(c, sid, "healed")
    assert srv.alive()
