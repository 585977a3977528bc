"""The agent's side: its relay (the process each channel's Docker exec runs)
killed, the channel reconnects and the next command works, a detached
command's output included; the agent itself (PID 1) killed, the sandbox
leaves `running` with the reason and requests get a clear answer, never a
hang."""
import time

from chaos_util import create
from harness.wait import until


def _relays(dockerd, cid):
    out = dockerd.docker("exec", cid, "ps", "-eo", "pid,args", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if "agent relay" in line]


def test_relay_killed_channel_reconnects(local_dockerd, on_dockerd):
    srv = on_dockerd(local_dockerd)
    c = srv.client()
    sid = create(c, "relay")
    r = c.post(f"/api/sandboxes/{sid}/commands", json={"command": "echo one; sleep 600"}, timeout=30)
    assert r.status == 201, r
    cmd = r.json["id"]
    cid = c.get(f"/api/sandboxes/{sid}").json["container_id"]
    relays = _relays(local_dockerd, cid)
    assert relays, "no relay process in the sandbox"
    local_dockerd.docker("exec", cid, "kill", "-9", *relays)
    t = time.monotonic()
    r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": "echo two"}, timeout=30)
    assert r.status == 200 and r.json["stdout"] == "two\n", r
    assert time.monotonic() - t < 10
    r = c.get(f"/api/sandboxes/{sid}/commands/{cmd}/logs", timeout=30)
    assert r.status == 200 and b"one" in r.body, r
    assert srv.wait_log("agent channel broke", timeout=5)


def test_agent_killed_sandbox_says_why(local_dockerd, on_dockerd):
    srv = on_dockerd(local_dockerd)
    c = srv.client()
    sid = create(c, "agent")
    cid = c.get(f"/api/sandboxes/{sid}").json["container_id"]
    # the agent is PID 1: SIGKILL from outside, as the OOM killer or a crash would end it
    local_dockerd.docker("kill", "-s", "KILL", cid)
    def left_running():
        sb = c.get(f"/api/sandboxes/{sid}").json
        return sb if sb["status"] != "running" else None

    sb = until(left_running, 15, "the sandbox to leave running")
    assert sb["status"] == "stopped", sb
    assert "137" in (sb["status_reason"] or ""), sb
    t = time.monotonic()
    r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": "true"}, timeout=30)
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_running", r
    assert time.monotonic() - t < 1
