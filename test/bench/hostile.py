"""Fresh requests among slow and hostile clients (issue 12): the latency of a
GET of a sandbox and of a small exec on an idle server, then with 2,000
connections open that trickle a head, trickle a JSON body, send nothing, or
stream an exec they never read (test/integration/harness/hostile.py; the
chaos test test/chaos/test_slow_clients.py checks the answers and the cuts).
The goal: the p99 with them within 2x of the idle one.
Env: HOSTILE_N (300: requests of each kind per side)."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from common import log  # noqa: E402
from harness.hostile import Hostile, raise_nofile  # noqa: E402

HOSTILE_N = int(os.environ.get("HOSTILE_N", "300"))
COUNTS = {"head": 660, "body": 660, "silent": 640, "stream": 40}


def _sockets(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def _cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(pid, between, timeout=60.0):
    """Waits (calling between) until the server has stopped working on the
    streams' start: less than 5% of a core over a second. Their first few
    MiB each (until the client's buffers are full) take seconds on a busy
    machine, and are not what is measured. Returns the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = _cpu_s(pid)
        end = time.monotonic() + 1
        while time.monotonic() < end:
            between()
            time.sleep(0.01)
        if _cpu_s(pid) - before < 0.05:
            return time.monotonic() - t0
    raise RuntimeError(f"the server was still busy {timeout:.0f} s after the hostile connections opened")


def _measure(c, sid, n, between=None):
    """n GETs of the sandbox and n execs of `true`, alternating, on one
    kept-alive connection; (get seconds, exec seconds). Every answer checked."""
    gets, execs = [], []
    for i in range(n):
        if between:
            between()
        t0 = time.perf_counter()
        r = c.get(f"/api/sandboxes/{sid}")
        gets.append(time.perf_counter() - t0)
        if r.status != 200:
            raise RuntimeError(f"GET -> {r.status}")
        t0 = time.perf_counter()
        r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": ["true"]})
        execs.append(time.perf_counter() - t0)
        if r.status != 200 or r.json["exit_code"] != 0:
            raise RuntimeError(f"execute -> {r.status} {r.body[:100]!r}")
    return gets, execs


def hostile_benchmarks(table, run, templates):
    total = sum(COUNTS.values())
    raise_nofile(total + 1024)
    # timeouts longer than the run: no hostile connection is cut while measured
    srv = run.new_server(
        name=f"{run.run_id}_hostile",
        env={"SANDBAR_LOG_LEVEL": "warn", "DEVCONTAINERS_PATH": templates,
             "SANDBAR_HEADER_TIMEOUT": "300s", "SANDBAR_BODY_TIMEOUT": "300s",
             "SANDBAR_IDLE_CONN_TIMEOUT": "300s", "SANDBAR_MEMORY_OVERCOMMIT": "0",
             "ASAN_OPTIONS": None, "UBSAN_OPTIONS": None, "LSAN_OPTIONS": None},
    )
    srv.start()
    h = None
    try:
        c = srv.client(timeout=120)
        r = c.post("/api/sandboxes", json={"template": "bare", "name": "bench-hostile"})
        if r.status != 201:
            raise RuntimeError(f"POST /api/sandboxes -> {r.status} {r.body[:120]!r}")
        sid = r.json["id"]
        time.sleep(1)
        _measure(c, sid, 20)  # warm up
        idle_get, idle_exec = _measure(c, sid, HOSTILE_N)
        base = _sockets(srv.pid)
        log(f"hostile: opening {total} connections ({COUNTS})")
        h = Hostile(srv, sid, COUNTS, command="yes | head -c 16000000", exec_timeout=600)
        h.open()
        deadline = time.monotonic() + 30
        while _sockets(srv.pid) < base + total and time.monotonic() < deadline:
            h.tick()
            time.sleep(0.1)
        if _sockets(srv.pid) < base + total:
            raise RuntimeError(f"the server holds {_sockets(srv.pid) - base} of {total}")
        log(f"hostile: the server settled {_settle(srv.pid, h.tick):.1f}s after")
        t0 = time.monotonic()
        hostile_get, hostile_exec = _measure(c, sid, HOSTILE_N, between=h.tick)
        took = time.monotonic() - t0
        still = h.count_open()
        if still != total:
            raise RuntimeError(f"only {still} of {total} hostile connections stayed open while measured")
        log(f"hostile: measured for {took:.1f}s with all {total} open")
        c.close()
        h.close()
        h = None
        c = srv.client(timeout=120)
        c.delete(f"/api/sandboxes/{sid}")
        c.close()
    finally:
        if h:
            h.close()
        srv.stop()
    note = f"N={HOSTILE_N}; 2,000 hostile connections open vs none"
    table.add_latencies(f"GET /api/sandboxes/{{{{id}}}} p{{p}} ms ({note})", (hostile_get, idle_get), (50, 99),
                        "{:.2f}")
    table.add_latencies(f"exec `true` p{{p}} ms ({note})", (hostile_exec, idle_exec), (50, 99), "{:.2f}")
