"""The chaos soak: a mixed load of creates, execs, uploads, stops, starts and
deletes against one sandbard on a private dockerd while faults are injected at
random (sandbard killed with -9 and started again, dockerd stopped and started,
PostgreSQL stopped and started), then a consistency audit that compares
PostgreSQL, Docker and what clients were told.

Every random choice comes from one seeded generator (the seed is printed), so
a run can be replayed with the same seed (timings still differ). Bounded: the
load runs for `seconds`, each operation has a timeout, at most `workers`
operations are in flight.

Used by test_soak.py (a short run under tools/test) and tools/chaos (a long one)."""
import os
import random
import threading
import time

from harness import pg

LIVE = ("creating", "starting", "running", "stopping", "stopped", "warm")
TRANSITIONAL = ("creating", "starting", "stopping")


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked_creates = {}  # sandbox id -> name, 201 seen
        self.acked_deletes = set()  # 204 seen (or 404 after one was sent: gone, as told)
        self.deletes_sent = set()  # a delete went out (its answer may have been lost with a kill)
        self.acked = 0  # every 2xx
        self.answers = {}  # status -> count
        self.faults = []  # (kind, seconds to recover)
        self.bad = []  # answers that break the rules (500s, 400 for server states)

    def note(self, op, status):
        self.last = status
        with self.lock:
            self.answers[status] = self.answers.get(status, 0) + 1
            if 200 <= status < 300:
                self.acked += 1
            if status == 500 or (status == 400 and op != "exec"):
                self.bad.append((op, status))


def _op(rng, srv, tally, names):
    c = srv.client(timeout=60)
    try:
        with tally.lock:
            ids = [sid for sid in tally.acked_creates if sid not in tally.acked_deletes]
        kind = rng.choice(["create", "exec", "exec", "upload", "stop", "start", "delete"] if ids else ["create"])
        if kind == "create":
            name = f"s{next(names)}"
            r = c.post("/api/sandboxes", json={"template": "base", "name": name}, timeout=120)
            tally.note(kind, r.status)
            if r.status == 201:
                with tally.lock:
                    tally.acked_creates[r.json["id"]] = name
            return
        sid = rng.choice(ids)
        if kind == "exec":
            r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": "echo ok"}, timeout=60)
            if r.status == 200:
                assert r.json["stdout"] == "ok\n", r
        elif kind == "upload":
            data = rng.randbytes(rng.randint(1, 64 * 1024))
            r = c.put(f"/api/sandboxes/{sid}/files/content?path=/workspace/f.bin", body=data, timeout=60)
        elif kind in ("stop", "start"):
            r = c.post(f"/api/sandboxes/{sid}/{kind}", timeout=60)
        else:
            with tally.lock:
                tally.deletes_sent.add(sid)
            r = c.delete(f"/api/sandboxes/{sid}", timeout=60)
            if r.status in (204, 404):
                with tally.lock:
                    tally.acked_deletes.add(sid)
        tally.note(kind, r.status)
    except OSError:
        tally.note("dropped", 0)  # sandbard killed under it: nothing was acknowledged
    finally:
        c.close()


def _until_up(srv, timeout=60.0):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        try:
            if srv.client(timeout=2).get("/health", timeout=2).status == 200:
                return time.monotonic() - t
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("sandbard did not come back")


def _served(srv, kind, tally, timeout=60.0):
    """Seconds until sandbard serves a request that needs what came back: a
    create (`wait: false`: 202 once Docker is seen again), a list (PostgreSQL)."""
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        c = srv.client(timeout=10)
        try:
            if kind == "dockerd":
                r = c.post("/api/sandboxes", json={"template": "base", "wait": False}, timeout=10)
                if r.status == 202:
                    with tally.lock:
                        tally.acked += 1
                        tally.acked_creates[r.json["id"]] = "probe"
                    return time.monotonic() - t
            elif c.get("/api/sandboxes?limit=1", timeout=10).status == 200:
                return time.monotonic() - t
        except OSError:
            pass
        finally:
            c.close()
        time.sleep(0.05)
    raise AssertionError(f"sandbard did not serve again {timeout:.0f} s after {kind} came back")


def _fault(rng, srv, dockerd, tally, pg_cluster):
    """One fault; records (kind, outage s, back-to-service s after the part returned)."""
    kinds = os.environ.get("CHAOS_FAULTS", "kill9,dockerd,postgres").split(",")
    kind = rng.choice([k for k in kinds if k != "postgres" or pg_cluster])
    t = time.monotonic()
    if kind == "kill9":
        srv.kill()
        srv.start(wait=False)
        outage, back = 0.0, _until_up(srv)
    else:
        part = dockerd if kind == "dockerd" else pg_cluster
        part.stop()
        time.sleep(rng.uniform(0.5, 3))
        part.start()
        outage = time.monotonic() - t
        back = _served(srv, kind, tally)
    with tally.lock:
        tally.faults.append((kind, outage, back))


def run(srv, dockerd, seed, seconds, workers=4, fault_every=(3.0, 8.0), pg_cluster=None, log=print):
    """The load and the faults for `seconds`, then the audit. Returns the report."""
    rng = random.Random(seed)
    log(f"chaos: seed {seed}, {seconds:.0f} s, {workers} workers")
    tally = Tally()
    names = iter(range(10**9))
    stop = time.monotonic() + seconds
    seeds = [rng.randrange(2**32) for _ in range(workers)]

    def worker(i):
        wr = random.Random(seeds[i])
        while time.monotonic() < stop:
            _op(wr, srv, tally, names)
            if not 200 <= getattr(tally, "last", 200) < 300:
                time.sleep(wr.uniform(0.1, 0.3))  # as a client told 503 / Retry-After would

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    while time.monotonic() < stop:
        time.sleep(min(rng.uniform(*fault_every), max(0.0, stop - time.monotonic())))
        if time.monotonic() < stop:
            _fault(rng, srv, dockerd, tally, pg_cluster)
    for t in threads:
        t.join(180)
    return audit(srv, dockerd, tally, log)


def audit(srv, dockerd, tally, log=print, settle=60.0):
    """PostgreSQL against Docker against the answers: lost (an acknowledged
    create missing, an acknowledged delete not gone), orphans (a container or
    volume of ours without a live row), stuck (a transitional status after the
    reconciler had its time)."""
    if not srv.alive():
        srv.start()
    _until_up(srv)
    deadline = time.monotonic() + settle
    while True:
        rows = {}
        for line in pg.psql("SELECT id, status, coalesce(container_id, '') FROM sandboxes",
                            url=srv.database_url).splitlines():
            sid, status, cid = line.split("|")
            rows[sid] = (status, cid)
        stuck = sorted(sid for sid, (st, _) in rows.items() if st in TRANSITIONAL)
        if not stuck or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    lost = []
    for sid in tally.acked_creates:
        st = rows.get(sid, ("missing", ""))[0]
        if sid in tally.acked_deletes:
            if st != "deleted":
                lost.append((sid, "acknowledged delete, row " + st))
        elif st not in LIVE and not (st == "deleted" and sid in tally.deletes_sent):
            lost.append((sid, "acknowledged create, row " + st))
    cluster = f"label=sandbar.cluster={srv.database}"
    containers = {}
    for line in dockerd.docker("ps", "-a", "--filter", cluster, "--format",
                               '{{.ID}} {{.Label "sandbar.sandbox"}}').stdout.splitlines():
        cid, _, sid = line.partition(" ")
        containers[cid] = sid
    volumes = {}
    for line in dockerd.docker("volume", "ls", "--filter", cluster, "--format",
                               '{{.Name}} {{.Label "sandbar.sandbox"}}').stdout.splitlines():
        name, _, sid = line.partition(" ")
        volumes[name] = sid
    orphans = [("container", c) for c, sid in containers.items() if rows.get(sid, ("missing",))[0] not in LIVE]
    orphans += [("volume", v, dockerd.docker("volume", "inspect", "-f", "{{.CreatedAt}}", v).stdout.strip())
                for v, sid in volumes.items() if rows.get(sid, ("missing",))[0] not in LIVE]
    for sid in tally.acked_deletes:
        if sid in containers.values():
            lost.append((sid, "acknowledged delete, container still there"))
    rec = [b for _, _, b in tally.faults]
    report = {
        "faults injected": len(tally.faults),
        "operations acknowledged": tally.acked,
        "lost": len(lost),
        "orphans": len(orphans),
        "stuck": len(stuck),
        "bad answers": len(tally.bad),
        "recovery max s": round(max(rec), 2) if rec else 0,
        "recovery mean s": round(sum(rec) / len(rec), 2) if rec else 0,
    }
    for kind in ("kill9", "dockerd", "postgres"):
        b = sorted(r for k, _, r in tally.faults if k == kind)
        o = [x for k, x, _ in tally.faults if k == kind]
        if b:
            report[f"{kind} recovery s (n, median, max; outage mean)"] = (
                len(b), round(b[len(b) // 2], 2), round(b[-1], 2), round(sum(o) / len(o), 2))
    for k, v in report.items():
        log(f"  {k}: {v}")
    log(f"  answers: {dict(sorted(tally.answers.items()))}")
    log(f"  faults (outage, back): {[f'{k} {o:.1f}/{b:.2f}s' for k, o, b in tally.faults]}")
    report["details"] = {"lost": lost, "orphans": orphans, "stuck": stuck, "bad": tally.bad[:20]}
    return report
