"""The preview proxy's benchmark rows: a small static app (static_app.c) in a
sandbox, served through sandbard's proxy, against nginx proxy_pass to the
same published port, the published port directly, the agent-stream path (an
unpublished port) against the published one, and a wake (the held request's
first byte) against a raw `docker start` of the same app until its port
answers, and a fresh request with many idle keep-alive clients open. Env:
WAKE_ROUNDS (10), PREVIEW_MB (256: one GET through each path),
PREVIEW_KEEPALIVE (32: the upstream connections both proxies keep idle per
port), PREVIEW_IDLE_CLIENTS (1000)."""
import http.client
import os
import shutil
import socket
import subprocess
import time

from common import WRK_SECONDS, engine, engine_conn, log, wrk_stats
from harness import paths
from harness.nginx import Nginx

HERE = os.path.dirname(os.path.abspath(__file__))
WAKE_ROUNDS = int(os.environ.get("WAKE_ROUNDS", "10"))
PREVIEW_MB = int(os.environ.get("PREVIEW_MB", "256"))
KEEPALIVE = int(os.environ.get("PREVIEW_KEEPALIVE", "32"))
IDLE_CLIENTS = int(os.environ.get("PREVIEW_IDLE_CLIENTS", "1000"))
DOMAIN = "preview.localhost"
IMAGE = "sandbar/base:latest"
PUBLISHED, UNPUBLISHED = 8080, 8081


def app_binary():
    path = os.path.join(paths.ROOT, os.environ.get("BUILD_DIR", "build"), "test", "bench", "static_app")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} was not built")
    return path


class ProxyNginx(Nginx):
    """nginx, one worker, proxy_pass to upstream with KEEPALIVE idle
    connections kept: the baseline of sandbard's proxy."""

    def __init__(self):
        super().__init__(os.path.join(paths.DATA, "bench", "nginx-proxy"))

    def start(self, upstream):
        super().start(f"""    upstream app {{
        server {upstream};
        keepalive {KEEPALIVE};
    }}
    server {{
        listen 127.0.0.1:{self.port};
        access_log off;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}""")


def get(host, port, path, host_header=None, timeout=60):
    """Status and seconds to the answer's head of one GET (body read after)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Host": host_header} if host_header else {})
        r = conn.getresponse()
        dt = time.perf_counter() - t0
        r.read()
        return r.status, dt
    finally:
        conn.close()


def download_mbps(url_host, port, host_header, mb):
    """MB/s of one GET /big/<mb MiB> read to the end (curl, no disk)."""
    r = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", "-H", f"Host: {host_header}",
         f"http://{url_host}:{port}/big/{mb << 20}"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    size, secs = r.stdout.split()
    if r.returncode != 0 or int(size) != mb << 20:
        raise RuntimeError(f"GET /big through {host_header}: {r.stdout} {r.stderr[-200:]}")
    return mb * 1.048576 / float(secs)


def idle_clients(srv, host, n):
    """n client connections that each had one proxied exchange and stay open."""
    socks = []
    req = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    for _ in range(n):
        s = socket.create_connection((srv.host, srv.port), timeout=30)
        socks.append(s)
        s.sendall(req)
        got = b""
        while not got.endswith(b"hello, world\n"):
            d = s.recv(4096)
            if not d:
                raise RuntimeError("an idle client's exchange was cut")
            got += d
    return socks


def host_port(c, sid, port):
    r = c.get(f"/api/sandboxes/{sid}")
    for m in r.json.get("port_mappings") or []:
        if m.get("container_port") == port and m.get("host_port"):
            return m["host_port"]
    raise RuntimeError(f"port {port} of {sid} is not published: {r.json.get('port_mappings')}")


def start_app(c, sid, port):
    r = c.post(f"/api/sandboxes/{sid}/commands",
               json={"command": ["/tmp/static_app", str(port)], "service": True, "port": port})
    if r.status != 201:
        raise RuntimeError(f"service on {port}: {r.status} {r.body[:200]!r}")


def wait_status(c, sid, status, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if c.get(f"/api/sandboxes/{sid}").json.get("status") == status:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{sid} never became {status}")


def raw_app(run_id, folder):
    """A plain container of IMAGE running static_app (bind-mounted) on a
    published port: the wake baseline. Its id."""
    conn = engine_conn()
    labels = {"sandbar.managed": "true", "sandbar.test": "bench", "sandbar.instance": run_id}
    cid = engine(conn, "POST", f"/containers/create?name={run_id}-preview", {
        "Image": IMAGE,
        "Entrypoint": ["/app/static_app", str(PUBLISHED)],
        "Cmd": [],
        "Labels": labels,
        "HostConfig": {
            "Mounts": [{"Type": "bind", "Source": folder, "Target": "/app", "ReadOnly": True}],
            "PortBindings": {f"{PUBLISHED}/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            "NetworkMode": run_id,  # the sandboxes' network
        },
        "ExposedPorts": {f"{PUBLISHED}/tcp": {}},
    })["Id"]
    conn.close()
    return cid


def raw_wake(cid):
    """Seconds from `docker start` (Engine API) to the app's first answer on
    its published port, tried every 2 ms; the container stopped after."""
    conn = engine_conn()
    t0 = time.perf_counter()
    engine(conn, "POST", f"/containers/{cid}/start")
    ports = engine(conn, "GET", f"/containers/{cid}/json")["NetworkSettings"]["Ports"]
    port = int(ports[f"{PUBLISHED}/tcp"][0]["HostPort"])
    while True:
        try:
            status, _ = get("127.0.0.1", port, "/", timeout=5)
            if status == 200:
                break
        except OSError:
            pass
        if time.perf_counter() - t0 > 30:
            raise RuntimeError("the raw container's app never answered")
        time.sleep(0.002)
    dt = time.perf_counter() - t0
    engine(conn, "POST", f"/containers/{cid}/stop?t=0")
    conn.close()
    return dt


def preview_benchmarks(table, srv, c, run_id):
    binary = app_binary()
    r = c.post("/api/sandboxes", json={"template": "bare", "name": "bench-preview", "auto_wake": True})
    if r.status != 201:
        raise RuntimeError(f"POST /api/sandboxes -> {r.status} {r.body[:200]!r}")
    sid = r.json["id"]
    folder = os.path.join(paths.DATA, "bench", "preview-app")
    raw = None
    nginx = ProxyNginx()
    try:
        with open(binary, "rb") as f:
            r = c.put(f"/api/sandboxes/{sid}/files/content?path=/tmp/static_app", body=f.read())
        if r.status not in (200, 201):
            raise RuntimeError(f"upload static_app: {r.status}")
        r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": ["chmod", "755", "/tmp/static_app"]})
        if r.status != 200:
            raise RuntimeError(f"chmod: {r.status}")
        start_app(c, sid, PUBLISHED)
        start_app(c, sid, UNPUBLISHED)
        direct = f"{PUBLISHED}-{sid}.{DOMAIN}"
        agent = f"{UNPUBLISHED}-{sid}.{DOMAIN}"
        for h in (direct, agent):
            end = time.monotonic() + 30
            while get(srv.host, srv.port, "/", h)[0] != 200:
                if time.monotonic() > end:
                    raise RuntimeError(f"{h} never answered")
                time.sleep(0.1)
        published = host_port(c, sid, PUBLISHED)

        log(f"wrk through the proxy and through nginx proxy_pass ({WRK_SECONDS}s each)")
        ours = wrk_stats(f"{srv.url}/", 50, direct)
        nginx.start(f"127.0.0.1:{published}")
        base = wrk_stats(f"http://127.0.0.1:{nginx.port}/", 50, direct)
        nginx.stop()
        table.add(f"preview GET req/s (wrk -c50; nginx proxy_pass, 1 worker, keepalive {KEEPALIVE})",
                  ours[0], base[0])
        table.add("preview GET p99 ms (same runs)", ours[2], base[2], fmt="{:.2f}")

        log("wrk -c1 through the proxy and to the published port")
        one = wrk_stats(f"{srv.url}/", 1, direct)
        straight = wrk_stats(f"http://127.0.0.1:{published}/", 1)
        table.add("preview GET p50 ms, 1 connection (the published port directly)", one[1], straight[1],
                  fmt="{:.3f}")
        table.add("preview added latency p50 ms, 1 connection", one[1] - straight[1], fmt="{:.3f}")

        log(f"wrk -c1 through the proxy with {IDLE_CLIENTS} idle keep-alive connections open")
        idle = idle_clients(srv, direct, IDLE_CLIENTS)
        try:
            crowded = wrk_stats(f"{srv.url}/", 1, direct)
        finally:
            for s in idle:
                s.close()
        table.add(f"preview GET p50 ms, 1 connection, {IDLE_CLIENTS} idle ones open (none open)", crowded[1], one[1],
                  fmt="{:.3f}")

        log("the agent-stream path (an unpublished port) against the published one")
        through_agent = wrk_stats(f"{srv.url}/", 50, agent)
        table.add("preview via the agent req/s (wrk -c50; via the published port)", through_agent[0], ours[0])
        mb_agent = download_mbps(srv.host, srv.port, agent, PREVIEW_MB)
        mb_direct = download_mbps(srv.host, srv.port, direct, PREVIEW_MB)
        table.add(f"preview via the agent MB/s (GET {PREVIEW_MB} MiB; via the published port)", mb_agent,
                  mb_direct)

        log(f"{WAKE_ROUNDS} wakes through the proxy and raw docker starts, interleaved")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        shutil.copy(binary, folder)
        raw = raw_app(run_id, folder)
        woken, started = [], []
        for i in range(WAKE_ROUNDS):
            def ours_side():
                r = c.post(f"/api/sandboxes/{sid}/stop")
                if r.status not in (200, 202):
                    raise RuntimeError(f"stop: {r.status} {r.body[:200]!r}")
                wait_status(c, sid, "stopped")
                status, dt = get(srv.host, srv.port, "/", direct)
                if status != 200:
                    raise RuntimeError(f"the woken preview answered {status}")
                woken.append(dt)

            def raw_side():
                started.append(raw_wake(raw))
            for side in ((ours_side, raw_side), (raw_side, ours_side))[i % 2]:
                side()
        table.add_latencies(f"wake -> first byte p{{p}} ms (N={WAKE_ROUNDS}; raw docker start + port answers)",
                            (woken, started), (50, 95), "{:.0f}")
        log("wake ms: ours " + " ".join(f"{x * 1000:.0f}" for x in woken) +
            "; raw " + " ".join(f"{x * 1000:.0f}" for x in started))
    finally:
        nginx.stop()
        c.delete(f"/api/sandboxes/{sid}")
        if raw:
            conn = engine_conn()
            try:
                engine(conn, "DELETE", f"/containers/{raw}?force=true")
            finally:
                conn.close()
        shutil.rmtree(folder, ignore_errors=True)

