"""Disk full (issue 12): the upload spool on an 8 MiB tmpfs filling in the
middle of uploads, and a PostgreSQL of the test's own whose data directory
sits on a small tmpfs filling up under a running sandbard. Out of space is
507 `insufficient_storage` for the spool and 503 `database_unavailable` for
the database (README, "Out of space"); nothing half-written stays, and both
work again once there is room, without a restart of sandbard."""
import hashlib
import json
import os
import secrets
import subprocess
import time

from harness import docker, paths
from harness.need import need
from harness.wait import until
from test_files import TAIL, download, ls, make_sandbox, mib_chunks, multipart_head, upload
from test_files_chunked import chunked_upload
from tiny_pg import TinyCluster

SPOOL_MB = 8
TRANSITIONAL = ("creating", "starting", "stopping")
LEAVE_KB = int(os.environ.get("CHAOS_PG_LEAVE_KB", "256"))


def mount_tmpfs(folder, size_mb):
    os.makedirs(folder, exist_ok=True)
    if os.geteuid() != 0:
        need("root", "mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "sandbar-chaos", folder],
                      capture_output=True).returncode != 0:
        need("mount", "mount -t tmpfs was refused here")


def is_insufficient_storage(status, body):
    return status == 507 and json.loads(body)["error"]["code"] == "insufficient_storage"


def test_upload_spool_fills_mid_upload(server_factory):
    """A chunked upload (spooled before it goes to Docker) and an upload to
    a stopped sandbox (spooled whole) of 12 MiB each into an 8 MiB spool:
    507 `insufficient_storage` once the spool's disk is full, no file and no
    temporary in the sandbox, the spool file closed (its blocks freed), and
    then an upload that fits works, on the same server."""
    spool = os.path.join(paths.DATA, "chaos", f"spool-{os.getpid()}")
    mount_tmpfs(spool, SPOOL_MB)
    try:
        srv = server_factory(env={"UPLOAD_SPOOL_DIR": spool})
        c = srv.client()
        sb = make_sandbox(c)
        sid, cid = sb["id"], sb["container_id"]

        # chunked, to a running sandbox: 12 MiB in 64 KiB chunks
        st, body = chunked_upload(srv, sid, [multipart_head("big.bin")] + [os.urandom(65536)] * 192 + [TAIL])
        assert is_insufficient_storage(st, body), (st, body)
        assert "no space" in json.loads(body)["error"]["message"]
        names = ls(cid, "/workspace")
        assert "big.bin" not in names and not [n for n in names if n.startswith(".sandbar")], names
        until(lambda: not srv.open_files(spool), what="the spool file to close")
        assert os.listdir(spool) == []
        assert os.statvfs(spool).f_bfree == os.statvfs(spool).f_blocks, "the spool's blocks were not freed"

        # a stopped sandbox: spooled whole (with a Content-Length) before Docker sees a byte
        r = c.post(f"/api/sandboxes/{sid}/stop")
        assert r.status == 200 and r.json["status"] == "stopped", r
        st, body = upload(srv, sid, "cold.bin", mib_chunks(12 << 20, hashlib.sha256()), 12 << 20)
        assert is_insufficient_storage(st, body), (st, body)
        until(lambda: not srv.open_files(spool), what="the spool file to close")
        assert os.listdir(spool) == []
        r = c.post(f"/api/sandboxes/{sid}/start")
        assert r.status == 200 and r.json["status"] == "running", r
        cid = r.json["container_id"]
        names = ls(cid, "/workspace")
        assert "cold.bin" not in names and not [n for n in names if n.startswith(".sandbar")], names

        # room again: an upload that fits, both ways, byte for byte
        h = hashlib.sha256()
        pieces = list(mib_chunks(6 << 20, h))
        st, body = chunked_upload(srv, sid, [multipart_head("fits.bin")] + pieces + [TAIL])
        assert st == 200, (st, body)
        r, _, n, digest = download(srv, sid, "/workspace/fits.bin", sink=True)
        assert r.status == 200 and n == 6 << 20 and digest == h.hexdigest()
        assert os.listdir(spool) == []
        assert c.get("/health").status == 200
        c.delete(f"/api/sandboxes/{sid}")
        c.close()
    finally:
        subprocess.run(["umount", "-l", spool], check=False)
        os.rmdir(spool)


def big_labels():
    """64 labels of 200 random characters: about 14 KiB that PostgreSQL
    cannot compress, so each create needs pages of its own."""
    return {f"k{i}": secrets.token_hex(100) for i in range(64)}


def rows(pg):
    out = pg.psql("SELECT id, status FROM sandboxes", db="sandbar") or ""
    return dict(line.split("|") for line in out.split())


def test_database_disk_fills(server_factory):
    """sandbard against a PostgreSQL whose data directory (WAL included) is
    on a 96 MiB tmpfs: with the disk full, creates (14 KiB of labels each)
    and stops answer 201/200 or 503 `database_unavailable` with
    Retry-After, reads still answer; every create acknowledged is there and
    none refused left a container; once the space is back, the same server
    (not restarted) creates again, and no sandbox is left in a transitional
    status."""
    pg = TinyCluster(os.path.join(paths.DATA, "chaos", f"tinypg-{os.getpid()}"), size_mb=96)
    try:
        pg.start()
        srv = server_factory(env={"DATABASE_URL": pg.url("sandbar"), "SANDBAR_PG_POOL_SIZE": "2"})
        c = srv.client(timeout=60)
        first = c.post("/api/sandboxes", json={"template": "base", "labels": big_labels()})
        assert first.status == 201, first
        keep = make_sandbox(c)["id"]
        acked = {first.json["id"]: "running", keep: "running"}

        # a little room left: the last creates and stops that fit meet the
        # disk filling between their writes (the row, then its status)
        pg.fill(leave_kb=LEAVE_KB)
        refused = 0
        for i in range(16):
            r = c.post("/api/sandboxes", json={"template": "base", "labels": big_labels(),
                                               "env_vars": {"PAD": secrets.token_hex(2000)}})
            if r.status == 201:
                acked[r.json["id"]] = "running"
            else:
                assert r.status == 503 and r.json["error"]["code"] == "database_unavailable", r
                assert r.header("Retry-After") == "1"
                refused += 1
        assert refused > 0, "the full disk refused no create: the test filled nothing"
        # reads go on
        r = c.get(f"/api/sandboxes/{keep}")
        assert r.status == 200 and r.json["status"] == "running", r
        assert c.get("/api/sandboxes").status == 200
        # stops and starts with the disk full: done and recorded, or refused
        for sid in list(acked):
            for op, after in (("stop", "stopped"), ("start", "running")):
                r = c.post(f"/api/sandboxes/{sid}/{op}")
                if r.status == 200:
                    assert r.json["status"] == after, r
                    acked[sid] = after
                else:
                    assert r.status == 503 and r.json["error"]["code"] == "database_unavailable", r
                    break
        print(f"disk full: {len(acked)} sandboxes acknowledged, {refused} creates refused")
        assert srv.alive()

        pg.unfill()
        # the same server writes again (its pool's connections kept)
        t0 = time.monotonic()
        r = None
        while time.monotonic() - t0 < 20:
            r = c.post("/api/sandboxes", json={"template": "base", "labels": big_labels()})
            if r.status != 503:
                break
            time.sleep(0.5)
        assert r.status == 201, r
        acked[r.json["id"]] = "running"

        # every acknowledged sandbox is there as acknowledged; nothing in between
        until(lambda: not [s for s in rows(pg).values() if s in TRANSITIONAL], timeout=30,
              what="no sandbox in a transitional status")
        have = rows(pg)
        for sid, status in acked.items():
            assert have.get(sid) == status, (sid, status, have.get(sid))
            r = c.get(f"/api/sandboxes/{sid}")
            assert r.status == 200 and r.json["status"] == status, r
        # a refused create left no container: the containers of this server
        # (labelled with its cluster) are those of live rows
        live = {sid for sid, s in have.items() if s in ("running", "stopped")}
        cluster = srv.env_overrides["SANDBAR_CLUSTER"]
        labelled = set()
        for cid in docker.ps(f"sandbar.cluster={cluster}"):
            labelled.add((docker.inspect(cid)["Config"]["Labels"] or {}).get("sandbar.sandbox"))
        assert labelled == live, (labelled, live)
        for sid in acked:
            assert c.delete(f"/api/sandboxes/{sid}").status == 204
        c.close()
        srv.stop()  # before its database goes
    finally:
        pg.destroy()
