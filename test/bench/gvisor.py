"""gVisor against runc through the same sandbard in the same run
(BENCH_ONLY=gvisor, and part of the whole run when dockerd has the runtime):
creates of the `bare` template with "runtime": "gvisor" and "runc"
interleaved, each side first every other round, timed to the 201 and to the
end of the first exec; then exec round trips (`true`, and `python3 -c pass`:
a process that makes a few thousand system calls), a 1 KiB file written and
read back through the agent, and the memory of an idle sandbox (its cgroup),
one sandbox of each runtime, rounds interleaved. The gVisor side is the
"sandbar" column, runc the baseline.
Env: GVISOR_CREATES (20 each side), GVISOR_EXECS (200), GVISOR_PY (30)."""
import json
import os
import subprocess
import time

from common import log, timed_exec

GVISOR_CREATES = int(os.environ.get("GVISOR_CREATES", "20"))
GVISOR_EXECS = int(os.environ.get("GVISOR_EXECS", "200"))
GVISOR_PY = int(os.environ.get("GVISOR_PY", "30"))
DOCKER_RUNTIME = "sandbar-gvisor"


def registered():
    """True when dockerd has the gVisor runtime (tools/lib/setup.sh registers it)."""
    out = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True,
                         timeout=30)
    return out.returncode == 0 and DOCKER_RUNTIME in json.loads(out.stdout or "{}")


def create(c, runtime, name):
    """Seconds to the 201 and to the end of the first exec; the sandbox."""
    t0 = time.perf_counter()
    r = c.post("/api/sandboxes", json={"template": "bare", "name": name, "runtime": runtime})
    made = time.perf_counter() - t0
    if r.status != 201 or not isinstance(r.json, dict):
        raise RuntimeError(f"POST /api/sandboxes ({runtime}) -> {r.status} {r.body[:160]!r}")
    e = c.post(f"/api/sandboxes/{r.json['id']}/execute", json={"command": ["true"]})
    if e.status != 200 or e.json.get("exit_code") != 0:
        raise RuntimeError(f"first exec ({runtime}) -> {e.status} {e.body[:160]!r}")
    return made, time.perf_counter() - t0, r.json


def file_round_trip(c, sid, payload):
    t0 = time.perf_counter()
    w = c.put(f"/api/sandboxes/{sid}/files/content?path=/tmp/small.bin", body=payload)
    g = c.get(f"/api/sandboxes/{sid}/files/content?path=/tmp/small.bin")
    dt = time.perf_counter() - t0
    if w.status not in (200, 201) or g.body != payload:
        raise RuntimeError(f"file round trip: PUT {w.status}, GET {g.status}")
    return dt


def cgroup_memory_mib(cid):
    """The container's memory cgroup usage (cgroup v1, then v2), MiB."""
    for path in (f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes",
                 f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.current"):
        try:
            with open(path) as f:
                return int(f.read()) / (1 << 20)
        except OSError:
            continue
    raise RuntimeError(f"no memory cgroup found for {cid[:12]}")


def interleaved(rounds, ours, base):
    """ours() and base() once each per round, each first every other round."""
    a, b = [], []
    for i in range(rounds):
        for side in ((ours, a), (base, b)) if i % 2 == 0 else ((base, b), (ours, a)):
            side[1].append(side[0]())
    return a, b


def gvisor_benchmarks(table, c):
    made = []
    try:
        log(f"gvisor: {GVISOR_CREATES} creates each, gVisor and runc interleaved")
        g_made, r_made, g_first, r_first = [], [], [], []
        for i in range(GVISOR_CREATES):
            for runtime in (("gvisor", "runc") if i % 2 == 0 else ("runc", "gvisor")):
                dt, first, sb = create(c, runtime, f"bench-{runtime}-{i}")
                made.append(sb["id"])
                (g_made if runtime == "gvisor" else r_made).append(dt)
                (g_first if runtime == "gvisor" else r_first).append(first)
        table.add_latencies(f"gVisor create p{{p}} ms (N={GVISOR_CREATES}; runc create, same run)",
                            (g_made, r_made), (50, 95), "{:.1f}")
        table.add_latencies(f"gVisor create -> first exec p{{p}} ms (N={GVISOR_CREATES}; runc)",
                            (g_first, r_first), (50, 95), "{:.1f}")
        for sid in made:
            c.delete(f"/api/sandboxes/{sid}")
        made.clear()

        _, _, g = create(c, "gvisor", "bench-gvisor-exec")
        made.append(g["id"])
        _, _, r = create(c, "runc", "bench-runc-exec")
        made.append(r["id"])
        time.sleep(2)  # both settled: what follows a start is not what is measured
        table.add("gVisor idle sandbox memory MiB (its cgroup; runc's)", cgroup_memory_mib(g["container_id"]),
                  cgroup_memory_mib(r["container_id"]), fmt="{:.1f}")
        for _ in range(20):  # warm-up: the login environment, the first channel
            timed_exec(c, g["id"], ["true"])
            timed_exec(c, r["id"], ["true"])
        log(f"gvisor: {GVISOR_EXECS} exec round trips each")
        table.add_latencies(f"gVisor exec `true` round trip p{{p}} ms (N={GVISOR_EXECS}; runc)",
                            interleaved(GVISOR_EXECS, lambda: timed_exec(c, g["id"], ["true"]),
                                        lambda: timed_exec(c, r["id"], ["true"])), (50, 99), "{:.2f}")
        log(f"gvisor: {GVISOR_PY} python3 starts each")
        py = ["python3", "-c", "pass"]
        table.add_latencies(f"gVisor exec `python3 -c pass` p{{p}} ms (N={GVISOR_PY}; runc)",
                            interleaved(GVISOR_PY, lambda: timed_exec(c, g["id"], py),
                                        lambda: timed_exec(c, r["id"], py)), (50, 95), "{:.1f}")
        payload = os.urandom(1024)
        log(f"gvisor: {GVISOR_EXECS} small-file round trips each")
        table.add_latencies(f"gVisor 1 KiB file write+read p{{p}} ms (N={GVISOR_EXECS}; runc)",
                            interleaved(GVISOR_EXECS, lambda: file_round_trip(c, g["id"], payload),
                                        lambda: file_round_trip(c, r["id"], payload)), (50, 95), "{:.2f}")
    finally:
        for sid in made:
            c.delete(f"/api/sandboxes/{sid}")
