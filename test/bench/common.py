"""What the benchmarks share: logging, wrk, percentiles and the raw Docker
Engine API (the baselines' side)."""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time

WRK_SECONDS = int(os.environ.get("WRK_SECONDS", "10"))


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tools
def wrk(url, connections=50, host=None):
    """Requests per second of wrk -t1 -cN over WRK_SECONDS (non-2xx answers fail)."""
    return wrk_stats(url, connections, host)[0]


def wrk_stats(url, connections=50, host=None):
    """(requests/s, p50 ms, p99 ms) of wrk -t1 -cN --latency over WRK_SECONDS,
    with this Host header when given (non-2xx answers fail)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{WRK_SECONDS}s", "--latency", url]
    if host:
        argv[1:1] = ["-H", f"Host: {host}"]
    r = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=WRK_SECONDS + 60,
        stdin=subprocess.DEVNULL,
    )
    m = re.search(r"Requests/sec:\s+([0-9.]+)", r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed: {r.stdout[-300:]} {r.stderr[-300:]}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", r.stdout)
    errs = re.search(r"Socket errors: (.*)", r.stdout)
    if bad:
        raise RuntimeError(f"{bad.group(1)} non-2xx answers from {url}")
    if errs:
        log(f"wrk socket errors on {url}: {errs.group(1)}")
    return float(m.group(1)), wrk_latency(r.stdout, 50), wrk_latency(r.stdout, 99)


def wrk_latency(out, p):
    """Milliseconds at percentile p of wrk --latency's distribution."""
    m = re.search(rf"^\s+{p}%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M)
    if not m:
        raise RuntimeError(f"no {p}% latency in wrk's output")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def timed_exec(c, sid, command):
    """Seconds for one POST .../execute of command through client c; it must exit 0."""
    t0 = time.perf_counter()
    r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": command})
    dt = time.perf_counter() - t0
    if r.status != 200 or r.json.get("exit_code") != 0:
        raise RuntimeError(f"execute {command!r} -> {r.status} {r.body[:120]!r}")
    return dt


def percentile(values, p):
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def engine_conn():
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        return UnixHTTPConnection(host[len("unix://"):])
    if host.startswith("tcp://"):
        h, _, p = host[len("tcp://"):].partition(":")
        return http.client.HTTPConnection(h, int(p or 2375), timeout=60)
    raise RuntimeError(f"unsupported DOCKER_HOST {host}")


def engine(conn, method, path, body=None):
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise RuntimeError(f"Engine API {method} {path}: {r.status} {data[:200]!r}")
    return json.loads(data) if data else None
