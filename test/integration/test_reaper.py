"""The reaper: an idle sandbox expires and its container goes; one kept
alive by heartbeats survives."""
import time

from harness import docker
from sandboxes import templates_env, wait_status


def test_idle_sandbox_expires_heartbeated_one_survives(server_factory):
    srv = server_factory(env=templates_env(SANDBOX_IDLE_TIMEOUT="2s", SANDBAR_REAPER_INTERVAL="1s"))
    c = srv.client()
    idle = c.post("/api/sandboxes", json={"template": "plain", "name": "idle"})
    kept = c.post("/api/sandboxes", json={"template": "plain", "name": "kept"})
    assert idle.status == 201 and kept.status == 201, (idle, kept)
    idle, kept = idle.json, kept.json
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert c.post(f"/api/sandboxes/{kept['id']}/heartbeat").status == 204
        time.sleep(0.5)
    gone = wait_status(c, idle["id"], "expired", timeout=5)
    assert gone["deleted_at"] is not None and "idle" in gone["status_reason"]
    assert not docker.exists(idle["container_id"])
    assert docker.inspect("sandbar-ws-" + idle["id"], kind="volume") is None
    alive = c.get(f"/api/sandboxes/{kept['id']}").json
    assert alive["status"] == "running" and docker.running(kept["container_id"])
    assert [s["id"] for s in c.get("/api/sandboxes").json] == [kept["id"]]
    assert srv.wait_log(f"sandbox={idle['id']} expired")
    assert c.delete(f"/api/sandboxes/{kept['id']}").status == 204
