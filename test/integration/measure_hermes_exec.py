"""A measurement, not a test (pytest collects it only when named): p50/p99 of
`true` as argv and as a shell string through the native /execute and the
Hermes WebSocket, beside raw `docker exec`. Run:
  PYTEST_ARGS="-s -k measure test/integration/measure_hermes_exec.py" tools/test integration
(SANDBAR_MEASURE_N calls each, default 300); the table goes to
$SANDBAR_DATA/log/test/hermes_measure.txt."""
import os
import subprocess
import time

import pytest

from commands_util import make_sandbox
from harness.jsonrpc import Rpc


@pytest.fixture
def sandbox(client):
    sb = make_sandbox(client)
    yield sb
    client.delete(f"/api/sandboxes/{sb['id']}")


def test_measure_shell_string_vs_argv(server, client, sandbox):
    """p50/p99 of `true` as argv and as a shell string, through the native
    /execute and the Hermes WebSocket, beside raw `docker exec` (sequential,
    after a warm-up). Printed, and written to $SANDBAR_DATA/log/test/."""
    sid, n = sandbox["id"], int(os.environ.get("SANDBAR_MEASURE_N", "300"))

    def timed(fn, count=n):
        for _ in range(20):
            fn()
        ts = []
        for _ in range(count):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1000)
        ts.sort()
        return ts[len(ts) // 2], ts[int(len(ts) * 0.99) - 1]

    def native(cmd):
        r = client.post(f"/api/sandboxes/{sid}/execute", json={"command": cmd})
        assert r.status == 200 and r.json["exitCode"] == 0, r

    r = Rpc(server, sid)

    def hermes(cmd):
        res, _ = r.call("exec", {"command": cmd})
        assert res["exit_code"] == 0

    rows = [
        ("native /execute argv [\"true\"]", timed(lambda: native(["true"]))),
        ("native /execute shell \"true\" (login env kept)", timed(lambda: native("true"))),
        ("hermes exec \"true\" (plain words: exec'd)", timed(lambda: hermes("true"))),
        ("hermes exec \"'true'\" (SDK quoting)", timed(lambda: hermes("'true'"))),
        ("hermes exec \"true;\" (needs /bin/sh -c)", timed(lambda: hermes("true;"))),
        ("docker exec true", timed(lambda: subprocess.run(["docker", "exec", sandbox["container_id"], "true"],
                                                           check=True), count=30)),
    ]
    r.close()
    lines = [f"{name:48s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms" for name, (p50, p99) in rows]
    out = os.path.join(os.environ.get("SANDBAR_DATA", ".data"), "log", "test", "hermes_measure.txt")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
