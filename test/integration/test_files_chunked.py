"""Chunked uploads (Transfer-Encoding: chunked, no Content-Length): spooled in
an unlinked host file until the size is known, then sent to Docker. Round
trips with sha256, the path field after the file, the limit, an abort, a
stopped sandbox, a full spool, and a spool folder that is always left empty."""
import hashlib
import json
import os
import socket
import subprocess

import pytest

from harness import docker
from harness.need import need
from harness.wait import until
from test_files import (ASAN_SMALL_QUARANTINE, BOUNDARY, TAIL, download, ls, make_sandbox,
                        multipart_head)


def path_field(path):
    return (f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n{path}"
            f"\r\n--{BOUNDARY}--\r\n").encode()


def chunked_upload(server, sid, pieces, timeout=300):
    """POSTs the byte strings in pieces, each as one HTTP chunk; returns (status, body)."""
    s = socket.create_connection((server.host, server.port), timeout=timeout)
    s.sendall((f"POST /api/sandboxes/{sid}/files/upload HTTP/1.1\r\nHost: x\r\n"
               f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n").encode())
    try:
        for p in pieces:
            if p:
                s.sendall(b"%x\r\n" % len(p) + p + b"\r\n")
        s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered early (413): the answer is still there to read
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(65536)
        if not b:
            break
        data += b
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        b = s.recv(65536)
        if not b:
            break
        rest += b
    s.close()
    return status, rest


def test_chunked_small_round_trips_and_path_after_file(client, server):
    sb = make_sandbox(client)
    sid, cid = sb["id"], sb["container_id"]
    for name, data in (("empty.bin", b""), ("one.bin", b"x"), ("a b ü.txt", b"hello\r\n--not a boundary\r\n")):
        st, body = chunked_upload(server, sid, [multipart_head(name, path="/workspace/ch"), data, TAIL])
        assert st == 200, body
        assert json.loads(body) == {"status": "ok", "path": f"/workspace/ch/{name}"}
        r, got, n, _ = download(server, sid, f"/workspace/ch/{name}")
        assert r.status == 200 and got == data, (name, got)
    # the path field after the file part is taken when the body is chunked
    body = multipart_head("late.txt")
    st, resp = chunked_upload(server, sid, [body[:7], body[7:], b"late", b" data", path_field("/tmp/late dir")])
    assert st == 200, resp
    assert json.loads(resp) == {"status": "ok", "path": "/tmp/late dir/late.txt"}
    assert sh_cat(cid, "/tmp/late dir/late.txt") == "late data"
    assert sh_stat(cid, "/tmp/late dir/late.txt") == "1000 644"
    assert not [n for n in ls(cid, "/tmp/late dir") if n.startswith(".sandbar-upload")]
    # a bad path after the file: 400, nothing written
    st, resp = chunked_upload(server, sid, [multipart_head("bad.txt"), b"zz", path_field("/tmp/../etc")])
    assert st == 400 and json.loads(resp)["error"]["code"] == "invalid_path", resp
    assert "bad.txt" not in ls(cid, "/workspace")
    # malformed: no closing delimiter
    st, resp = chunked_upload(server, sid, [multipart_head("trunc.txt"), b"abc"])
    assert st == 400 and json.loads(resp)["error"]["code"] == "invalid_multipart", resp
    assert "trunc.txt" not in ls(cid, "/workspace")


def sh_cat(cid, path):
    code, out = docker.exec_(cid, "cat", path)
    assert code == 0, out
    return out


def sh_stat(cid, path):
    code, out = docker.exec_(cid, "stat", "-c", "%u %a", path)
    assert code == 0, out
    return out.strip()


def test_chunked_100mb_sha256_flat_rss_and_empty_spool(server_factory, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    server = server_factory(env={"ASAN_OPTIONS": ASAN_SMALL_QUARANTINE, "UPLOAD_SPOOL_DIR": str(spool)})
    client = server.client()
    sb = make_sandbox(client)
    sid = sb["id"]
    size = 100 << 20
    seed = os.urandom(1 << 20)
    h = hashlib.sha256()
    spool_seen = []

    def pieces():
        yield multipart_head("big.bin", path="/workspace")
        for i in range(size >> 20):
            b = hashlib.sha256(seed + i.to_bytes(4, "big")).digest() * (1 << 15)
            h.update(b)
            yield b
            spool_seen.extend(os.listdir(spool))
        yield TAIL

    with server.rss_peak() as peak:
        st, body = chunked_upload(server, sid, pieces())
        assert st == 200, body
        growth_mb = peak.grew_kb() / 1024
        r, _, n, digest = download(server, sid, "/workspace/big.bin", sink=True)
    assert r.status == 200 and n == size and digest == h.hexdigest()
    assert growth_mb < 24, f"sandbard RSS grew {growth_mb:.1f} MiB during a chunked 100 MB upload"
    # the spool file is unlinked as soon as it is made: never visible, never left
    assert spool_seen == [] and os.listdir(spool) == []
    client.close()


def test_chunked_limit_abort_and_stopped_sandbox(server_factory, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    srv = server_factory(env={"UPLOAD_LIMIT": "1m", "UPLOAD_SPOOL_DIR": str(spool)})
    c = srv.client()
    sb = make_sandbox(c)
    sid, cid = sb["id"], sb["container_id"]
    # over the limit: 413 mid-stream, nothing written
    st, body = chunked_upload(srv, sid, [multipart_head("big.bin")] + [b"\0" * 65536] * 40 + [TAIL])
    assert st == 413 and json.loads(body)["error"]["code"] == "too_large", body
    # exactly at the limit: fine
    st, body = chunked_upload(srv, sid, [multipart_head("max.bin"), b"\1" * (1 << 20), TAIL])
    assert st == 200, body
    # a client that goes away half way
    s = socket.create_connection((srv.host, srv.port))
    s.sendall((f"POST /api/sandboxes/{sid}/files/upload HTTP/1.1\r\nHost: x\r\n"
               f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n").encode())
    p = multipart_head("aborted.bin") + b"a" * 400000
    s.sendall(b"%x\r\n" % len(p) + p + b"\r\n")
    until(lambda: srv.open_files(spool), what="the upload's spool file")
    mark = srv.log_mark()
    s.close()
    assert srv.wait_log(f"POST /api/sandboxes/{sid}/files/upload 499", since=mark)
    until(lambda: not srv.open_files(spool), what="the aborted upload's spool file to close")
    names = ls(cid, "/workspace")
    assert "max.bin" in names and "big.bin" not in names and "aborted.bin" not in names, names
    assert not [n for n in names if n.startswith(".sandbar-upload")], names
    assert os.listdir(spool) == []
    # a stopped sandbox: the size is exact, so any multipart layout works
    docker._docker("stop", "-t", "1", cid)
    st, body = chunked_upload(srv, sid, [multipart_head("cold.txt"), b"cold data", path_field("/workspace/c")])
    assert st == 200, body
    assert json.loads(body) == {"status": "ok", "path": "/workspace/c/cold.txt"}
    r, got, _, _ = download(srv, sid, "/workspace/c/cold.txt")
    assert r.status == 200 and got == b"cold data"
    assert not docker.running(cid)
    c.close()


def test_chunked_spool_full_is_507_and_leaves_nothing(server_factory, tmp_path):
    # a 2 MiB tmpfs as the spool: the worker's write fails with ENOSPC while
    # more body pieces are still queued behind it
    spool = tmp_path / "spool"
    spool.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "sandbar-spool", str(spool)],
                      capture_output=True).returncode != 0:
        need("mount", "mount -t tmpfs was refused here")
    try:
        srv = server_factory(env={"UPLOAD_SPOOL_DIR": str(spool)})
        c = srv.client()
        sb = make_sandbox(c)
        sid, cid = sb["id"], sb["container_id"]
        st, body = chunked_upload(srv, sid, [multipart_head("full.bin")] + [b"\7" * 65536] * 64 + [TAIL])
        assert st == 507 and json.loads(body)["error"]["code"] == "insufficient_storage", body
        assert "full.bin" not in ls(cid, "/workspace")
        # the spool's space came back: an upload that fits still works
        st, body = chunked_upload(srv, sid, [multipart_head("fits.bin"), b"\1" * (1 << 20), TAIL])
        assert st == 200, body
        r, got, _, _ = download(srv, sid, "/workspace/fits.bin")
        assert r.status == 200 and got == b"\1" * (1 << 20)
        assert os.listdir(spool) == []
        c.close()
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)
