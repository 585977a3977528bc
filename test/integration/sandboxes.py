"""Shared helpers of the sandbox tests: the test templates folder, the exact
key set of a sandbox object, waiting for a status, the moves recorded in
sandbox_events, and a GET to a port published on loopback."""
import os
import re
import socket
import time

from harness import pg

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

SANDBOX_KEYS = {
    # monza's
    "id", "name", "status", "container_id", "image", "workspace_mount", "devcontainer_config", "env_vars",
    "port_mappings", "last_activity", "created_at", "expires_at", "deleted_at",
    # ours
    "template", "status_reason", "setup_output", "labels", "cpu", "memory", "idle_timeout", "idle_action",
    "auto_wake", "private", "private_ports", "ends_at", "keepalive_until", "preview_host", "network", "runtime",
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def check_shape(sb):
    assert set(sb) == SANDBOX_KEYS, set(sb) ^ SANDBOX_KEYS
    assert UUID.match(sb["id"]), sb["id"]
    for k in ("last_activity", "created_at", "expires_at"):
        assert RFC3339.match(sb[k]), (k, sb[k])
    assert sb["deleted_at"] is None or RFC3339.match(sb["deleted_at"])
    assert isinstance(sb["port_mappings"], list)
    # every port at <port>-<preview_host>, published ones with their URL
    assert sb["preview_host"] == f"{sb['id']}.preview.localhost", sb["preview_host"]
    for p in sb["port_mappings"]:
        assert set(p) == {"id", "sandbox_id", "host_port", "container_port", "preview_url"}, p
        assert p["preview_url"].startswith(f"http://{p['container_port']}-{sb['preview_host']}:"), p
    assert isinstance(sb["env_vars"], dict)
    assert isinstance(sb["devcontainer_config"], dict)


def wait_status(client, sid, want, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/sandboxes/{sid}")
        assert r.status == 200, r
        if r.json["status"] in want if isinstance(want, (set, tuple, list)) else r.json["status"] == want:
            return r.json
        if time.monotonic() > deadline:
            raise AssertionError(f"sandbox {sid} still {r.json['status']} after {timeout}s: {r.json}")
        time.sleep(0.1)


def templates_env(**extra):
    env = {"DEVCONTAINERS_PATH": TEMPLATES}
    env.update(extra)
    return env


def http_get(port):
    """The first bytes of the answer to GET / on 127.0.0.1:port, b"" when
    nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(100)
    except OSError:
        return b""


def transitions(srv, sid):
    """The sandbox's recorded moves, oldest first: (from or '-', to, actor or '-', reason or '-')."""
    out = pg.psql(f"SELECT coalesce(from_status, '-'), to_status, coalesce(actor, '-'), coalesce(reason, '-') "
                  f"FROM sandbox_events WHERE sandbox_id = '{sid}' ORDER BY id", url=srv.database_url)
    return [tuple(line.split("|")) for line in out.splitlines() if line]

