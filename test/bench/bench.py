"""Benchmarks of sandbard against baselines measured in the same run, printed
as a table: /health vs nginx (one worker, a static file), GET of a sandbox,
create latency vs raw Docker Engine create+start, exec round trips of `true`
(argv and shell string through /execute, Hermes `exec` over the WebSocket)
vs a raw docker exec, 1,000 execs over 50 sandboxes at concurrency 200 (argv,
then shell strings against the argv run), the agent's size and memory, and
memory with 1,000 rows.
Run through tools/bench (it sets up PostgreSQL, dockerd and the build).
Env: SANDBARD (binary), WRK_SECONDS (10), CREATES (40: cold creates each side,
interleaved, each side first every other round), EXEC_ROUNDS (200),
EXEC_SANDBOXES (50), EXECS (1000), EXEC_CONCURRENCY (200), POOL_SIZE (8: the warm
pool of template `pooled`), POOL_CREATES (50: create -> first exec from the
pool, one at a time, the pool full before each), BURST (50 creates at once
against the pool), POWER_ROUNDS (10 stop+start pairs vs docker stop/start), FILE_MB (1024: file transfer through the API vs `docker cp`, with
sandbard's peak RSS growth), FILE_RUNS (3: the best of as many interleaved
transfers each way; FILE_PERF=1 logs sandbard's syscall counts during each
transfer, through perf stat), SMALL_FILES (200: 1 KiB write+read round trips, agent vs
archive API), BENCH_ONLY (exec:
only the exec rows; files: only the large file transfer rows; small: only the small-file rows;
 preview: only the preview proxy's rows, see preview.py for their knobs; gvisor: only gVisor against
 runc, see gvisor.py; hostile: only the rows of fresh requests among 2,000 slow and hostile
 connections, see hostile.py), BENCH_KEEP_SERVER (seconds to keep the server up after
the exec rows, for `perf record -p`).
The concurrent exec run uses execload.py (asyncio, keep-alive, no threads) and
logs the CPU time each process group spent during it (sandbard, postgres,
dockerd, containerd-shim, the agents and their children, the client)."""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import client as httpc  # noqa: E402
from harness.jsonrpc import Rpc  # noqa: E402
from harness import paths, pg  # noqa: E402
from harness.nginx import Nginx  # noqa: E402
from harness.session import Session  # noqa: E402

import execload  # noqa: E402
from common import engine, engine_conn, log, percentile, timed_exec, wrk  # noqa: E402
from hostile import hostile_benchmarks  # noqa: E402
from preview import KEEPALIVE as PREVIEW_KEEPALIVE, preview_benchmarks  # noqa: E402
import gvisor  # noqa: E402

WRK_SECONDS = int(os.environ.get("WRK_SECONDS", "10"))
CREATES = int(os.environ.get("CREATES", "40"))
EXEC_ROUNDS = int(os.environ.get("EXEC_ROUNDS", "200"))
EXEC_SANDBOXES = int(os.environ.get("EXEC_SANDBOXES", "50"))
EXECS = int(os.environ.get("EXECS", "1000"))
EXEC_CONCURRENCY = int(os.environ.get("EXEC_CONCURRENCY", "200"))
FILE_MB = int(os.environ.get("FILE_MB", "1024"))
BENCH_ONLY = os.environ.get("BENCH_ONLY", "")
BENCH_KEEP_SERVER = float(os.environ.get("BENCH_KEEP_SERVER", "0"))
FILE_RUNS = int(os.environ.get("FILE_RUNS", "3"))
SMALL_FILES = int(os.environ.get("SMALL_FILES", "200"))
FILE_PERF = os.environ.get("FILE_PERF", "") == "1"
POOL_SIZE = int(os.environ.get("POOL_SIZE", "8"))
POOL_CREATES = int(os.environ.get("POOL_CREATES", "50"))
BURST = int(os.environ.get("BURST", "50"))
POWER_ROUNDS = int(os.environ.get("POWER_ROUNDS", "10"))
FILE_PERF_EVENTS = ",".join(f"syscalls:sys_enter_{n}" for n in (
    "read", "readv", "write", "writev", "sendfile64", "epoll_ctl", "epoll_wait"))
IMAGE = "sandbar/base:latest"
SEED_SQL = os.path.join(HERE, "seed_sandboxes.sql")


# ---------------------------------------------------------------- CPU use
CPU_GROUPS = (("sandbard", "sandbard"), ("postgres", "postgres"), ("dockerd", "dockerd"),
              ("containerd-shim", "containerd-shim"), ("containerd", "containerd"),
              ("agent", "agent (+ commands it reaped)"), ("python3", "python3 (client, others' tests)"))


def cpu_sample():
    """{pid: (group, clock ticks)} with each process's own and reaped
    children's time, plus the machine's busy ticks under pid 0. PostgreSQL
    counts only our cluster's processes (other clusters may share the machine)."""
    out = {}
    try:
        with open(os.path.join(paths.DATA, "pg", "data", "postmaster.pid")) as f:
            postmaster = f.readline().strip()
    except OSError:
        postmaster = ""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        f = st[st.rindex(")") + 2:].split()
        ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        group = next((g for prefix, g in CPU_GROUPS if comm.startswith(prefix)), "other")
        if group == "postgres" and postmaster not in (pid, f[1]):
            group = "postgres (other clusters)"
        if group == "other" and comm.startswith("kworker"):
            group = "kernel workers"
        if os.environ.get("BENCH_CPU_DETAIL") and group == "other":
            group = f"other: {comm}"
        out[int(pid)] = (group, ticks)
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    out[0] = ("(machine busy)", sum(v) - v[3] - v[4])
    return out


def log_cpu(before, after, wall, n):
    """Logs the CPU ms per exec each group spent between two samples (time
    of processes that ended unreaped by a sampled parent is not counted)."""
    hz = os.sysconf("SC_CLK_TCK")
    groups = {}
    for pid, (group, ticks) in after.items():
        d = ticks - before.get(pid, (group, 0))[1]
        groups[group] = groups.get(group, 0) + d
    parts = [f"{g} {d * 1000 / hz / n:.2f}" for g, d in sorted(groups.items(), key=lambda kv: -kv[1]) if d > 0]
    log(f"CPU ms per exec over {wall:.1f} s: " + ", ".join(parts))


# ---------------------------------------------------------------- baselines
class StaticNginx(Nginx):
    """nginx with one worker serving a small static file (harness/nginx.py
    runs it: config, pid and logs in .data/bench/nginx)."""

    def __init__(self):
        super().__init__(os.path.join(paths.DATA, "bench", "nginx"))
        self.www = os.path.join(paths.DATA, "bench", "nginx-www")

    def start(self):
        os.makedirs(self.www, exist_ok=True)
        with open(os.path.join(self.www, "health"), "w") as f:
            f.write('{"status":"ok"}')
        super().start(f"""    server {{
        listen 127.0.0.1:{self.port};
        access_log off;
        keepalive_requests 1000000;
        root {self.www};
        default_type application/json;
    }}""")


def docker_create_start(run_id, i):
    """Seconds for one Engine API create + start of IMAGE shaped like a sandbox
    (same limits, hardening, labelled workspace volume, published port, network),
    and the container id."""
    conn = engine_conn()
    labels = {"sandbar.managed": "true", "sandbar.test": "bench", "sandbar.instance": run_id}
    body = {
        "Image": IMAGE,
        "Entrypoint": ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"],
        "Cmd": [],
        "WorkingDir": "/workspace",
        "Labels": labels,
        "HostConfig": {
            "Memory": 2 << 30,
            "MemorySwap": 2 << 30,
            "NanoCpus": 2 * 10**9,
            "PidsLimit": 1024,
            "SecurityOpt": ["no-new-privileges"],
            "CapDrop": ["ALL"],
            "CapAdd": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"],
            "Mounts": [{"Type": "volume", "Source": f"{run_id}-ws-{i}", "Target": "/workspace",
                        "VolumeOptions": {"Labels": labels}}],
            "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            "NetworkMode": run_id,  # the sandboxes' network (SANDBAR_NETWORK: the run's, made by the server)
        },
        "ExposedPorts": {"8080/tcp": {}},
    }
    t0 = time.perf_counter()
    cid = engine(conn, "POST", f"/containers/create?name={run_id}-{i}", body)["Id"]
    engine(conn, "POST", f"/containers/{cid}/start")
    dt = time.perf_counter() - t0
    conn.close()
    return dt, cid


def docker_exec_true(conn, cid):
    """Seconds for one raw docker exec of `true`: create, start (attached,
    read to the end), inspect for the exit code."""
    t0 = time.perf_counter()
    eid = engine(conn, "POST", f"/containers/{cid}/exec",
                 {"Cmd": ["true"], "AttachStdout": True, "AttachStderr": True})["Id"]
    conn.request("POST", f"/exec/{eid}/start", body=json.dumps({"Detach": False, "Tty": False}),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    info = engine(conn, "GET", f"/exec/{eid}/json")
    dt = time.perf_counter() - t0
    if info.get("ExitCode") != 0:
        raise RuntimeError(f"docker exec true -> {info.get('ExitCode')}")
    return dt


def exec_benchmarks(table, srv, c, created):
    """Round trips vs docker exec on the same container (argv, shell string,
    Hermes WebSocket), then the concurrent runs (argv, shell strings)."""
    sid = created[0]
    cid = c.get(f"/api/sandboxes/{sid}").json["container_id"]
    log(f"{EXEC_ROUNDS} execs of `true` each as argv, as a shell string and over the Hermes WebSocket, "
        "and through docker exec, interleaved")

    def execute(command):
        return timed_exec(c, sid, command)

    def rounds():
        argv, shell, hermes, base = [], [], [], []
        conn = engine_conn()
        rpc = Rpc(srv, sid)

        def ws_exec():
            t0 = time.perf_counter()
            res, _ = rpc.call("exec", {"command": "true"})
            dt = time.perf_counter() - t0
            if res.get("exit_code") != 0:
                raise RuntimeError(f"hermes exec true -> {res!r}")
            return dt

        try:
            # warm-up: the agent works the login environment out as it starts,
            # and a shell string runs a login shell until that is in
            for _ in range(20):
                execute(["true"]), execute("true"), ws_exec()
                time.sleep(0.01)
            for i in range(EXEC_ROUNDS):
                argv.append(execute(["true"]))
                shell.append(execute("true"))
                hermes.append(ws_exec())
                if i % 4 == 0:  # docker exec is slow: a quarter as many samples
                    base.append(docker_exec_true(conn, cid))
        finally:
            rpc.close()
            conn.close()
        return argv, shell, hermes, base

    out = attempt(rounds)
    argv, shell, hermes, base = out if isinstance(out, tuple) else (out,) * 4
    table.add_latencies(f"exec `true` round trip p{{p}} ms (N={EXEC_ROUNDS}; raw docker exec)",
                        (argv, base), (50, 99), "{:.2f}")
    table.add_latencies(f"exec \"true\" shell string p{{p}} ms (N={EXEC_ROUNDS}; raw docker exec)",
                        (shell, base), (50, 99), "{:.2f}")
    table.add_latencies(f"exec \"true\" shell string p{{p}} ms (N={EXEC_ROUNDS}; the argv `true`)",
                        (shell, argv), (50, 99), "{:.2f}")
    table.add_latencies(f"Hermes WS exec \"true\" p{{p}} ms (N={EXEC_ROUNDS}; raw docker exec)",
                        (hermes, base), (50, 99), "{:.2f}")
    table.add_latencies(f"Hermes WS exec \"true\" p{{p}} ms (N={EXEC_ROUNDS}; /execute of \"true\")",
                        (hermes, shell), (50, 99), "{:.2f}")

    log(f"{EXECS} execs over {EXEC_SANDBOXES} sandboxes at concurrency {EXEC_CONCURRENCY}")

    def concurrent_run():
        ids = created[:EXEC_SANDBOXES]
        # each sandbox's agent channel connects on its first use (a docker exec
        # of the relay): open them first, so the run measures execs
        for sb in ids:
            c.post(f"/api/sandboxes/{sb}/execute", json={"command": ["true"]})
        # and each agent's login environment in (worked out as it starts; a
        # shell string runs a login shell until then)
        for _ in range(2):
            for sb in ids:
                c.post(f"/api/sandboxes/{sb}/execute", json={"command": "true"})
            time.sleep(0.5)
        out = []
        for shell in (False, True):
            jobs = execload.echo_jobs(ids, EXECS, shell=shell)
            cpu0, t0 = cpu_sample(), time.perf_counter()
            wall, lat, errors, client_cpu = execload.run(srv.host, srv.port, jobs, EXEC_CONCURRENCY)
            log_cpu(cpu0, cpu_sample(), time.perf_counter() - t0, EXECS)
            log(f"{'shell string' if shell else 'argv'}: load generator CPU {client_cpu:.2f} s "
                f"for {EXECS} execs in {wall:.2f} s")
            out.append((wall, lat, errors))
        return out

    out = attempt(concurrent_run)
    if isinstance(out, Exception):
        for name in ("execs/s", "p50", "p99", "errors"):
            table.add(f"{EXECS} execs / {EXEC_SANDBOXES} sandboxes: {name}", out)
    else:
        (wall, lat, errors), (s_wall, s_lat, s_errors) = out
        label = f"{EXECS} execs over {EXEC_SANDBOXES} sandboxes, concurrency {EXEC_CONCURRENCY}"
        table.add(f"{label}: execs/s", EXECS / wall)
        table.add(f"{label}: p50 ms", percentile(lat, 50) * 1000, fmt="{:.1f}")
        table.add(f"{label}: p99 ms", percentile(lat, 99) * 1000, fmt="{:.1f}")
        table.add(f"{label}: errors", errors, fmt="{:d}")
        # the same as shell strings (`sh -lc` in meaning): plain words exec'd
        # in the login environment the agent keeps, no login shell each;
        # the baseline is the argv run's
        label = "same, `echo i` as a shell string (argv run)"
        table.add(f"{label}: execs/s", EXECS / s_wall, EXECS / wall)
        table.add(f"{label}: p99 ms", percentile(s_lat, 99) * 1000, percentile(lat, 99) * 1000, fmt="{:.1f}")
        table.add(f"{label}: errors", s_errors, fmt="{:d}")
        if errors or s_errors:
            table.failed += 1

    agent = os.path.join(os.path.dirname(paths.sandbard_binary()), "agent", "sandbar-agent")
    table.add("agent binary KB (static, stripped)",
              os.path.getsize(agent) / 1024 if os.path.exists(agent) else RuntimeError("no agent binary"),
              fmt="{:.0f}")

    def agent_rss():
        r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": ["ps", "-o", "rss=", "-p", "1"]})
        return int(r.json["stdout"].strip())

    table.add("agent RSS per sandbox KB (ps inside, PID 1)", attempt(agent_rss))

    # The floor under the concurrent run: the CPU one `echo i` process costs
    # by itself in the same sandbox (posix_spawn in a loop, children's CPU).
    # Cores / that is the most execs a second the machine could start with
    # nothing else running, and concurrency / it the least mean latency
    # (Little's law) at that concurrency.
    def spawn_floor():
        script = (
            "import os\n"
            "t = os.times()\n"
            "for i in range(500):\n"
            "    pid = os.posix_spawn('/bin/echo', ['echo', str(i)], os.environ,"
            " file_actions=[(os.POSIX_SPAWN_OPEN, 1, '/dev/null', os.O_WRONLY, 0)])\n"
            "    os.waitpid(pid, 0)\n"
            "u = os.times()\n"
            "print((u.children_user + u.children_system - t.children_user - t.children_system) * 1000 / 500)\n"
        )
        r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": ["python3", "-c", script]})
        if r.status != 200 or r.json.get("exitCode") != 0:
            raise RuntimeError(f"spawn floor -> {r.status} {r.body[:200]!r}")
        return float(r.json["stdout"])

    floor = attempt(spawn_floor)
    table.add("`echo i` process alone in a sandbox, CPU ms (posix_spawn loop)", floor, fmt="{:.2f}")
    if isinstance(floor, float) and floor > 0:
        ceiling = os.cpu_count() * 1000 / floor
        table.add(f"ceiling for the concurrent run: {os.cpu_count()} cores / that, execs/s", ceiling)
        table.add(f"least mean latency at concurrency {EXEC_CONCURRENCY} (Little's law), ms",
                  EXEC_CONCURRENCY * 1000 / ceiling, fmt="{:.1f}")


# ---------------------------------------------------------------- files
class RssPeak:
    """Peak RSS of a process while a block runs, sampled every 20 ms."""

    def __init__(self, srv):
        self.srv = srv
        self.base = srv.rss_kb()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.srv.rss_kb() or 0)
            time.sleep(0.02)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()

    @property
    def growth_mb(self):
        return (self.peak - self.base) / 1024


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def file_transfers(srv, c, table):
    """FILE_MB up and down through the API and through `docker cp`, same
    sandbox, same local file, each side one whole command: `curl -F` / `curl -o`
    against `docker cp` (the CLI tars the file and sends it through the same
    Engine archive API that sandbard calls; on the way back it untars into a
    local file, as curl writes one). Best of FILE_RUNS, interleaved."""
    size = FILE_MB << 20
    r = c.post("/api/sandboxes", json={"template": "bare", "name": "bench-files"})
    if r.status != 201:
        raise RuntimeError(f"POST /api/sandboxes -> {r.status} {r.body[:120]!r}")
    sid, cid = r.json["id"], r.json["container_id"]
    tmpdir = tempfile.mkdtemp(prefix="sandbar-bench-")
    src = os.path.join(tmpdir, "payload.bin")
    out = os.path.join(tmpdir, "back.bin")
    try:
        block = os.urandom(1 << 20)
        with open(src, "wb") as f:
            for _ in range(FILE_MB):
                f.write(block)
        base_url = f"http://{srv.host}:{srv.port}/api/sandboxes/{sid}/files"

        def timed(argv):
            perf = None
            if FILE_PERF and argv[0] == "curl":
                # syscall counts of sandbard during this transfer (FILE_PERF=1)
                perf = subprocess.Popen(["perf", "stat", "-x,", "-e", FILE_PERF_EVENTS, "-p", str(srv.pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                time.sleep(0.3)
            t0 = time.perf_counter()
            cpu0 = cpu_seconds(srv.pid)
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run(argv, capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
            dt = time.perf_counter() - t0
            if perf:
                perf.send_signal(signal.SIGINT)
                counts = [ln.split(",") for ln in perf.communicate()[1].splitlines() if ln.count(",") > 2]
                log("  " + ", ".join(f"{c[2].split('_', 2)[-1]} {c[0]}" for c in counts))
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            log(f"{' '.join(argv[:2])}: {dt:.2f}s, client CPU {ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime:.2f}s, sandbard CPU {cpu_seconds(srv.pid) - cpu0:.2f}s")
            if r.returncode != 0:
                raise RuntimeError(f"{argv[0]} exit {r.returncode}: {r.stderr[-200:]!r}")
            return dt, cpu_seconds(srv.pid) - cpu0, r.stdout

        def api_upload():
            dt, cpu, body = timed(["curl", "-sS", "-f", "-F", "path=/tmp", "-F", f"file=@{src};filename=api.bin",
                                   f"{base_url}/upload"])
            if b'"ok"' not in body:
                raise RuntimeError(f"upload answered {body[:200]!r}")
            return dt, cpu

        def api_upload_chunked():
            dt, cpu, body = timed(["curl", "-sS", "-f", "-H", "Transfer-Encoding: chunked", "-F", "path=/tmp",
                                   "-F", f"file=@{src};filename=api.bin", f"{base_url}/upload"])
            if b'"ok"' not in body:
                raise RuntimeError(f"chunked upload answered {body[:200]!r}")
            return dt, cpu

        def api_download():
            dt, cpu, _ = timed(["curl", "-sS", "-f", "-o", out, f"{base_url}/download?path=/tmp/api.bin"])
            n = os.path.getsize(out)
            os.unlink(out)
            if n != size:
                raise RuntimeError(f"download got {n} bytes")
            return dt, cpu

        def cp_up():
            return timed(["docker", "cp", src, f"{cid}:/tmp/cp.bin"])[:2]

        def cp_down():
            dt = timed(["docker", "cp", f"{cid}:/tmp/cp.bin", out])[0]
            os.unlink(out)
            return dt, 0.0

        best = {}
        peaks = {"up": 0.0, "down": 0.0, "up_chunked": 0.0}
        for _ in range(FILE_RUNS):
            for key, fn, watch in (("up", api_upload, True), ("cp_up", cp_up, False),
                                   ("up_chunked", api_upload_chunked, True),
                                   ("down", api_download, True), ("cp_down", cp_down, False)):
                if watch:
                    with RssPeak(srv) as rss:
                        res = attempt(fn)
                    peaks[key] = max(peaks[key], rss.growth_mb)
                else:
                    res = attempt(fn)
                if isinstance(res, Exception):
                    best.setdefault(key, res)
                elif not isinstance(best.get(key), tuple) or res[0] < best[key][0]:
                    best[key] = res
        mb = FILE_MB
        rate = lambda v: mb / v[0] if isinstance(v, tuple) else v  # noqa: E731
        cpu = lambda v: v[1] if isinstance(v, tuple) else v  # noqa: E731
        table.add(f"upload {mb} MiB MB/s (curl -F; docker cp)", rate(best["up"]), rate(best["cp_up"]), fmt="{:.0f}")
        table.add(f"upload {mb} MiB chunked MB/s (spooled; docker cp)", rate(best["up_chunked"]),
                  rate(best["cp_up"]), fmt="{:.0f}")
        table.add(f"download {mb} MiB MB/s (curl -o; docker cp)", rate(best["down"]), rate(best["cp_down"]),
                  fmt="{:.0f}")
        table.add("sandbard CPU s during upload", cpu(best["up"]), fmt="{:.2f}")
        table.add("sandbard CPU s during download", cpu(best["down"]), fmt="{:.2f}")
        table.add("peak RSS growth during upload MiB", peaks["up"], fmt="{:.1f}")
        table.add("peak RSS growth during download MiB", peaks["down"], fmt="{:.1f}")
        table.add("peak RSS growth during chunked upload MiB", peaks["up_chunked"], fmt="{:.1f}")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        attempt(lambda: c.delete(f"/api/sandboxes/{sid}"))


# ---------------------------------------------------------------- the run
class Table:
    def __init__(self):
        self.rows = []
        self.failed = 0

    def add(self, name, ours, base=None, fmt="{:.0f}"):
        def cell(v):
            if v is None:
                return "-"
            if isinstance(v, Exception):
                self.failed += 1
                return f"error: {str(v).splitlines()[0][:60]}"
            return fmt.format(v)

        ratio = "-"
        if isinstance(ours, (int, float)) and isinstance(base, (int, float)) and base:
            ratio = f"{ours / base:.2f}"
        self.rows.append((name, cell(ours), cell(base), ratio))

    def add_latencies(self, name, timed, ps, fmt):
        """One row per percentile p of name.format(p=p), in ms: timed is
        (ours, base) lists of seconds, or the exception that stopped them."""
        ours, base = timed if isinstance(timed, tuple) else (timed, timed)
        for p in ps:
            self.add(name.format(p=p),
                     percentile(ours, p) * 1000 if isinstance(ours, list) else ours,
                     percentile(base, p) * 1000 if isinstance(base, list) else base, fmt=fmt)

    def print(self):
        head = ("benchmark", "sandbar", "baseline", "ratio")
        w = [max(len(r[i]) for r in self.rows + [head]) for i in range(4)]
        line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
        print(line(head))
        print("|" + "|".join("-" * (x + 2) for x in w) + "|")
        for r in self.rows:
            print(line(r))


def small_files(srv, c, table):
    """A small file written then read back: through the agent (PUT then GET
    .../files/content) vs through Docker's archive API (upload then download),
    same sandbox, one kept-alive connection."""
    r = c.post("/api/sandboxes", json={"template": "bare", "name": "bench-small-files"})
    if r.status != 201:
        raise RuntimeError(f"POST /api/sandboxes -> {r.status} {r.body[:120]!r}")
    sid = r.json["id"]
    time.sleep(1)  # what dockerd does right after a start is not what is measured
    payload = os.urandom(1024)
    boundary = "benchSmallBoundary42"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n/tmp\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"arch.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    ours, base = [], []
    try:
        # ours first, then the baseline: each archive call leaves dockerd busy
        # for a while after it answers (the container's file system unmounted,
        # its helper reaped), which, interleaved, lands on the next agent round
        # trip and measures Docker's tail instead of ours
        for i in range(SMALL_FILES + 10):
            t0 = time.perf_counter()
            w = c.put(f"/api/sandboxes/{sid}/files/content?path=/tmp/agent.bin", body=payload)
            g = c.get(f"/api/sandboxes/{sid}/files/content?path=/tmp/agent.bin")
            dt = time.perf_counter() - t0
            if w.status not in (200, 201) or g.body != payload:
                raise RuntimeError(f"agent round trip: PUT {w.status}, GET {g.status}")
            if i >= 10:  # warm-up left out
                ours.append(dt)
        for i in range(SMALL_FILES // 4 + 2):  # slow and steady: a quarter as many
            t0 = time.perf_counter()
            w = c.post(f"/api/sandboxes/{sid}/files/upload", body=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            g = c.get(f"/api/sandboxes/{sid}/files/download?path=/tmp/arch.bin")
            db = time.perf_counter() - t0
            if w.status != 200 or g.body != payload:
                raise RuntimeError(f"archive round trip: upload {w.status}, download {g.status}")
            if i >= 2:
                base.append(db)
    finally:
        c.delete(f"/api/sandboxes/{sid}")
    table.add_latencies(f"small file (1 KiB) write+read p{{p}} ms (N={SMALL_FILES}; agent vs archive API)",
                        (ours, base), (50, 95), "{:.2f}")


def pool_full(c, timeout=120):
    """Waits until the pool of `pooled` holds POOL_SIZE warm members."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = c.get("/api/pool")
        t = [t for t in r.json["templates"] if t["template"] == "pooled"] if r.status == 200 else []
        if t and t[0]["warm"] >= POOL_SIZE and t[0]["creating"] == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"the pool did not fill to {POOL_SIZE} within {timeout} s")


def create_then_exec(c, template, name):
    """Seconds from POST /api/sandboxes to the answer of its first command, and the id."""
    t0 = time.perf_counter()
    r = c.post("/api/sandboxes", json={"template": template, "name": name})
    if r.status != 201:
        raise RuntimeError(f"POST /api/sandboxes -> {r.status} {r.body[:120]!r}")
    e = c.post(f"/api/sandboxes/{r.json['id']}/execute", json={"command": ["true"]})
    dt = time.perf_counter() - t0
    if e.status != 200 or e.json.get("exit_code") != 0:
        raise RuntimeError(f"first exec -> {e.status} {e.body[:120]!r}")
    return dt, r.json["id"]


def raw_burst(run_id):
    """BURST raw Engine API create+starts at once: seconds each, and the containers."""
    out = [None] * BURST

    def one(i):
        try:
            out[i] = docker_create_start(run_id, f"burst-{i}")
        except Exception as e:  # noqa: BLE001 - a failure is a missing sample
            log(f"raw create {i}: {e}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return [r for r in out if r]


def pool_benchmarks(table, srv, c, run_id, raw_first_exec):
    """Create -> first exec from the pool (full before each), then BURST creates at once."""
    ours = []
    for i in range(POOL_CREATES):
        pool_full(c)
        dt, sid = create_then_exec(c, "pooled", f"bench-pool-{i}")
        ours.append(dt)
        c.delete(f"/api/sandboxes/{sid}")
    table.add_latencies(f"pool create -> first exec p{{p}} ms (N={POOL_CREATES}, pool {POOL_SIZE}; "
                        "raw create+start+exec)", (ours, raw_first_exec), (50, 95, 99), "{:.1f}")

    pool_full(c)
    log(f"{BURST} creates at once, pool of {POOL_SIZE}")
    results = [None] * BURST

    def one(i):
        cc = httpc.Client(srv.host, srv.port, timeout=300)
        t0 = time.perf_counter()
        try:
            r = cc.post("/api/sandboxes", json={"template": "pooled", "name": f"bench-burst-{i}"})
            results[i] = (time.perf_counter() - t0, r.status, r.json["id"] if r.status == 201 else None)
        except Exception as e:  # noqa: BLE001 - an error is a counted result
            results[i] = (time.perf_counter() - t0, str(e), None)
        finally:
            cc.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    done = [r for r in results if r]
    lat = [r[0] for r in done if r[1] == 201]
    errors = BURST - len(lat)
    if errors:
        log(f"{errors} creates at once failed: {sorted(str(r[1]) for r in done if r[1] != 201)}")
    ids = [r[2] for r in done if r[2]]
    claimed = int(pg.psql("SELECT count(*) FROM sandbox_events WHERE reason = 'claimed' AND sandbox_id = ANY("
                          f"'{{{','.join(ids)}}}'::uuid[])", url=srv.database_url).strip() or 0) if ids else 0
    for sid in ids:
        attempt(lambda: c.delete(f"/api/sandboxes/{sid}"))
    pool_full(c)  # the pool's refill is over before the baseline runs
    log(f"{BURST} raw Engine API create+starts at once")
    raw = raw_burst(run_id)
    conn = engine_conn()
    for _, cid in raw:
        attempt(lambda: engine(conn, "DELETE", f"/containers/{cid}?force=true&v=true"))
    for i in range(BURST):
        try:
            engine(conn, "DELETE", f"/volumes/{run_id}-ws-burst-{i}")
        except Exception:  # noqa: BLE001 - not made when its create failed
            pass
    conn.close()
    table.add_latencies(f"{BURST} creates at once, pool {POOL_SIZE}: p{{p}} ms (raw create+start, none pooled)",
                        (lat, [r[0] for r in raw] or None) if lat else RuntimeError("none"), (50, 95, 99),
                        "{:.1f}")
    table.add(f"{BURST} creates at once, pool {POOL_SIZE}: errors", errors)
    table.add(f"{BURST} creates at once, pool {POOL_SIZE}: served by the pool", claimed)


def power_benchmarks(table, c, sid, raw_cid):
    """POST stop then start of one sandbox vs the Engine API's stop and start
    of a raw container of the same shape, interleaved."""
    conn = engine_conn()
    stops, starts, raw_stops, raw_starts = [], [], [], []
    for _ in range(POWER_ROUNDS):
        for path, out in (("stop", stops), ("start", starts)):
            t0 = time.perf_counter()
            r = c.post(f"/api/sandboxes/{sid}/{path}")
            out.append(time.perf_counter() - t0)
            if r.status != 200:
                raise RuntimeError(f"POST {path} -> {r.status} {r.body[:120]!r}")
        for path, out in (("stop?t=10", raw_stops), ("start", raw_starts)):
            t0 = time.perf_counter()
            engine(conn, "POST", f"/containers/{raw_cid}/{path}")
            out.append(time.perf_counter() - t0)
    conn.close()
    table.add_latencies("stop p{p} ms (N=%d; raw docker stop)" % POWER_ROUNDS, (stops, raw_stops), (50,), "{:.1f}")
    table.add_latencies("start p{p} ms (N=%d; raw docker start)" % POWER_ROUNDS, (starts, raw_starts), (50,),
                        "{:.1f}")


def attempt(fn):
    try:
        return fn()
    except Exception as e:  # a failed benchmark is a cell, not the end of the run
        where = traceback.extract_tb(e.__traceback__)[-1]
        log(f"{getattr(fn, '__name__', 'step')}: {type(e).__name__}: {e} "
            f"({os.path.basename(where.filename)}:{where.lineno})")
        return e


class FilesOnlyDone(Exception):
    """BENCH_ONLY=files, small, preview, gvisor or hostile: those rows are in, skip the rest of the run."""


def main():
    table = Table()
    run = Session(prefix="sandbar_bench")
    with_gvisor = gvisor.registered()
    if not with_gvisor:
        log(f"gvisor: dockerd has no runtime {gvisor.DOCKER_RUNTIME}: no gVisor rows "
            "(SANDBAR_RUNTIMES=gvisor tools/lib/setup.sh docker registers it)")
    srv = run.new_server(
        name=f"{run.run_id}_server",
        env={"SANDBAR_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warn"), "UPLOAD_LIMIT": "4g",
             "DEVCONTAINERS_PATH": os.path.join(HERE, "templates"), "SANDBAR_WARM_POOL": f"pooled={POOL_SIZE}",
             # admission off: the bench keeps about 100 sandboxes (2 GiB limits each);
             # it measures creates, not the refusal past 8x this host's memory
             "SANDBAR_MEMORY_OVERCOMMIT": "0",
             # as many idle upstream connections as nginx's `keepalive` in the preview rows
             "SANDBAR_PREVIEW_IDLE_CONNS": str(PREVIEW_KEEPALIVE),
             "SANDBAR_RUNTIMES": "gvisor" if with_gvisor else None,
             "ASAN_OPTIONS": None, "UBSAN_OPTIONS": None, "LSAN_OPTIONS": None},
    )
    nginx = StaticNginx()
    created, raw = [], []
    try:
        srv.start()
        c = srv.client(timeout=120)
        attempt(lambda: pool_full(c))  # the pool's own creates are over before anything is measured
        time.sleep(1)
        rss_idle = srv.rss_kb()

        if BENCH_ONLY == "small":
            log(f"files: {SMALL_FILES} small-file round trips, agent vs archive API")
            attempt(lambda: small_files(srv, c, table))
            c.close()
            raise FilesOnlyDone()
        if BENCH_ONLY == "preview":
            log("previews: the proxy vs nginx proxy_pass, the published port, the agent path, wakes")
            attempt(lambda: preview_benchmarks(table, srv, c, run.run_id))
            c.close()
            raise FilesOnlyDone()
        if BENCH_ONLY == "gvisor":
            if not with_gvisor:
                raise RuntimeError(f"BENCH_ONLY=gvisor: dockerd has no runtime {gvisor.DOCKER_RUNTIME}")
            attempt(lambda: gvisor.gvisor_benchmarks(table, c))
            c.close()
            raise FilesOnlyDone()
        if BENCH_ONLY == "hostile":
            log("hostile: fresh requests among 2,000 slow and hostile connections")
            attempt(lambda: hostile_benchmarks(table, run, os.path.join(HERE, "templates")))
            c.close()
            raise FilesOnlyDone()
        if BENCH_ONLY == "files":
            log(f"files: {FILE_MB} MiB up and down, API vs docker cp")
            attempt(lambda: file_transfers(srv, c, table))
            c.close()
            raise FilesOnlyDone()
        if BENCH_ONLY != "exec":
            # /health: sandbar vs nginx
            log(f"wrk /health ({WRK_SECONDS}s)")
            ours = health = attempt(lambda: wrk(f"{srv.url}/health"))
            nginx.start()
            log(f"wrk nginx static file ({WRK_SECONDS}s)")
            base = attempt(lambda: wrk(f"http://127.0.0.1:{nginx.port}/health"))
            nginx.stop()
            table.add(f"GET /health req/s (wrk -t1 -c50 {WRK_SECONDS}s; nginx 1 worker)", ours, base)

            # create latency: sandbar vs Engine API create+start, interleaved so
            # that both see the same machine
            log(f"{CREATES} creates through sandbar and through the Engine API, interleaved")

            first_exec, raw_first_exec = [], []

            def creates():
                ours, base = [], []
                conn = engine_conn()
                for i in range(CREATES):
                    def sandbar_side():
                        t0 = time.perf_counter()
                        r = c.post("/api/sandboxes", json={"template": "bare", "name": f"bench-{i}"})
                        ours.append(time.perf_counter() - t0)
                        if r.status != 201 or not isinstance(r.json, dict):
                            raise RuntimeError(f"POST /api/sandboxes -> {r.status} {r.body[:120]!r}")
                        e = c.post(f"/api/sandboxes/{r.json['id']}/execute", json={"command": ["true"]})
                        first_exec.append(time.perf_counter() - t0)
                        if e.status != 200:
                            raise RuntimeError(f"first exec -> {e.status} {e.body[:120]!r}")
                        created.append(r.json["id"])

                    def raw_side():
                        dt, cid = docker_create_start(run.run_id, i)
                        raw.append(cid)
                        base.append(dt)
                        raw_first_exec.append(dt + docker_exec_true(conn, cid))

                    # each side goes first every other round: the one that
                    # follows a start meets the new container's own start-up
                    for side in ((sandbar_side, raw_side), (raw_side, sandbar_side))[i % 2]:
                        side()
                conn.close()
                return ours, base

            table.add_latencies(f"cold create p{{p}} ms (N={CREATES}; raw Engine API create+start)",
                                attempt(creates), (50, 95), "{:.1f}")
            table.add_latencies(f"cold create -> first exec p{{p}} ms (N={CREATES}; raw create+start+exec)",
                                (first_exec, raw_first_exec) if first_exec else RuntimeError("no creates"),
                                (50, 95, 99), "{:.1f}")
            if created and raw:
                log(f"{POWER_ROUNDS} stops and starts through sandbar and through the Engine API")
                attempt(lambda: power_benchmarks(table, c, created[0], raw[0]))
            if raw_first_exec:
                log(f"{POOL_CREATES} creates -> first exec from the pool")
                attempt(lambda: pool_benchmarks(table, srv, c, run.run_id, raw_first_exec))
            if raw:
                conn = engine_conn()
                for i, cid in enumerate(raw):
                    attempt(lambda: engine(conn, "DELETE", f"/containers/{cid}?force=true&v=true"))
                    attempt(lambda: engine(conn, "DELETE", f"/volumes/{run.run_id}-ws-{i}"))
                conn.close()

            # GET one sandbox
            if created:
                log(f"wrk GET /api/sandboxes/{{id}} ({WRK_SECONDS}s)")
                ours = attempt(lambda: wrk(f"{srv.url}/api/sandboxes/{created[0]}"))
            else:
                ours = RuntimeError("no sandbox was created")
            table.add(f"GET /api/sandboxes/{{id}} req/s (wrk -t1 -c50 {WRK_SECONDS}s; GET /health)", ours, health)

            log("previews: the proxy vs nginx proxy_pass, the published port, the agent path, wakes")
            attempt(lambda: preview_benchmarks(table, srv, c, run.run_id))
            if with_gvisor:
                attempt(lambda: gvisor.gvisor_benchmarks(table, c))

            log("hostile: fresh requests among 2,000 slow and hostile connections")
            attempt(lambda: hostile_benchmarks(table, run, os.path.join(HERE, "templates")))

        # exec: more sandboxes up to EXEC_SANDBOXES, then the exec rows
        log(f"creating sandboxes up to {EXEC_SANDBOXES} for the exec benchmarks")
        for i in range(len(created), EXEC_SANDBOXES):
            r = attempt(lambda: c.post("/api/sandboxes", json={"template": "bare", "name": f"bench-{i}"}))
            if not isinstance(r, Exception) and r.status == 201:
                created.append(r.json["id"])
        if created:
            attempt(lambda: exec_benchmarks(table, srv, c, created))
        if BENCH_KEEP_SERVER:
            log(f"server pid {srv.pid} at {srv.url} kept up for {BENCH_KEEP_SERVER:.0f} s; sandboxes {created[:3]}...")
            time.sleep(BENCH_KEEP_SERVER)

        for sid in created:
            attempt(lambda: c.delete(f"/api/sandboxes/{sid}"))

        if BENCH_ONLY != "exec":
            # memory: idle, then with 1,000 more rows listed once
            log("seeding 1,000 sandbox rows")

            def seed_and_list():
                cluster = srv.env_overrides.get("SANDBAR_CLUSTER", "default")
                pg.psql_file(SEED_SQL, url=srv.database_url, variables={"cluster": cluster})
                t0 = time.perf_counter()
                r = c.get("/api/sandboxes")
                dt = time.perf_counter() - t0
                if r.status != 200 or not isinstance(r.json, list) or len(r.json) < 1000:
                    raise RuntimeError(f"GET /api/sandboxes -> {r.status}, {len(r.json or [])} items")
                return dt

            if SMALL_FILES > 0:
                log(f"files: {SMALL_FILES} small-file round trips, agent vs archive API")
                attempt(lambda: small_files(srv, c, table))

            if FILE_MB > 0:
                log(f"files: {FILE_MB} MiB up and down, API vs docker cp")
                attempt(lambda: file_transfers(srv, c, table))

            listed = attempt(seed_and_list)
            rss_full = srv.rss_kb()
            table.add("RSS idle MB", rss_idle / 1024, fmt="{:.1f}")
            table.add(
                "RSS after 1,000 rows listed MB",
                rss_full / 1024 if not isinstance(listed, Exception) else listed,
                fmt="{:.1f}",
            )
            table.add("GET /api/sandboxes with 1,000 rows ms", listed * 1000 if isinstance(listed, float) else listed,
                      fmt="{:.1f}")
        c.close()
    except FilesOnlyDone:
        pass
    except Exception as e:
        log(f"aborted: {e}")
        table.failed += 1
    finally:
        nginx.stop()
        if srv.alive():
            try:
                srv.stop()
            except Exception as e:
                log(str(e))
                table.failed += 1
        left_c, left_v = run.cleanup()
        run.drop_databases()
        if left_c or left_v:
            log(f"left behind: containers {left_c}, volumes {left_v}")
            table.failed += 1
    table.print()
    print(f"server log: {srv.log_path}")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
