"""Files through Docker's archive API against the real dockerd: monza's
upload and download with exact shapes, streamed both ways (sha256 compared,
RSS flat), bad input refused with nothing written, archives round-tripped,
and a stopped sandbox served without being started."""
import hashlib
import http.client
import io
import json
import os
import socket
import tarfile
import threading
import time
import urllib.parse
import uuid

import pytest

from harness import docker
from harness.wait import until

BOUNDARY = "sandbarTestBoundary7MA4YWxkTrZu0gW"


def make_sandbox(client):
    r = client.post("/api/sandboxes", json={"template": "base"})
    assert r.status == 201, r
    return r.json


def multipart_head(filename, path=None, filename_star=None):
    parts = b""
    if path is not None:
        parts += (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n".encode()
            + path.encode()
            + b"\r\n"
        )
    disp = f'form-data; name="file"; filename="{filename}"'
    if filename_star:
        disp += "; filename*=UTF-8''" + urllib.parse.quote(filename_star)
    parts += (
        f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return parts


TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def upload(server, sid, filename, chunks, size, path=None, filename_star=None, tail=TAIL, headers=None):
    """Streams the multipart body (chunks: an iterable of bytes) without holding it.
    A Host in headers replaces http.client's own."""
    head = multipart_head(filename, path, filename_star)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=300)
    conn.putrequest("POST", f"/api/sandboxes/{sid}/files/upload", skip_host="Host" in (headers or {}))
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.endheaders()
    try:
        conn.send(head)
        for c in chunks:
            conn.send(c)
        conn.send(tail)
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered early (413, 404): the answer is still there to read
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def mib_chunks(size, h):
    """size bytes (a whole number of MiB) that do not repeat, one MiB at a
    time, never all held; each also goes into the hash h."""
    seed = os.urandom(1 << 20)
    for i in range(size >> 20):
        b = hashlib.sha256(seed + i.to_bytes(4, "big")).digest() * (1 << 15)
        h.update(b)
        yield b


def download(server, sid, path, extra="", sink=None, headers=None):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=300)
    conn.request("GET", f"/api/sandboxes/{sid}/files/download?path={urllib.parse.quote(path)}{extra}",
                 headers=headers or {})
    r = conn.getresponse()
    h = hashlib.sha256()
    n = 0
    data = b""
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        n += len(b)
        h.update(b)
        if sink is None and n <= (8 << 20):
            data += b
    conn.close()
    return r, data, n, h.hexdigest()


def sh(container, *cmd):
    code, out = docker.exec_(container, *cmd)
    assert code == 0, (cmd, out)
    return out


def ls(container, d):
    return sorted(sh(container, "ls", "-A", d).splitlines())


def temporaries(container, d="/workspace"):
    """The upload temporaries (`.sandbar-upload-<request id>-<random>`) in d."""
    return [n for n in ls(container, d) if n.startswith(".sandbar")]


def temporaries_now(client, sid, d="/workspace"):
    """The same through the file API (the agent), which works while an upload
    streams in: dockerd holds the container's lock for a whole archive PUT, so a
    Docker exec (ls) would wait for the upload to end."""
    r = client.get(f"/api/sandboxes/{sid}/files?path={d}")
    assert r.status == 200, r
    return [e["name"] for e in r.json if e["name"].startswith(".sandbar")]


def test_monza_upload_download_shapes(client, server):
    sb = make_sandbox(client)
    sid, cid = sb["id"], sb["container_id"]
    before = sb["expires_at"]
    for name, data in [("empty.bin", b""), ("one.bin", b"x"), ("with space.txt", b"hello world\n")]:
        st, body = upload(server, sid, name, [data], len(data))
        assert st == 200, body
        assert json.loads(body) == {"status": "ok", "path": f"/workspace/{name}"}
        r, got, n, _ = download(server, sid, f"/workspace/{name}")
        assert r.status == 200 and got == data and n == len(data)
        assert r.getheader("Content-Length") == str(len(data))
        assert r.getheader("Content-Disposition") == f'attachment; filename="{name}"'
    assert r.getheader("Content-Type").startswith("text/plain")
    # non-ASCII name via filename*=UTF-8''
    st, body = upload(server, sid, "x.txt", [b"\x89PNG\r\n\x1a\n...."], 12, filename_star="café ü.png")
    assert st == 200, body
    assert json.loads(body)["path"] == "/workspace/café ü.png"
    r, got, _, _ = download(server, sid, "/workspace/café ü.png")
    assert r.status == 200 and got == b"\x89PNG\r\n\x1a\n...."
    assert r.getheader("Content-Type") == "image/png"
    cd = r.getheader("Content-Disposition")
    assert cd.startswith('attachment; filename="caf_ _.png"') and "filename*=UTF-8''caf%C3%A9%20%C3%BC.png" in cd
    # no temporaries left, owner is the sandbox user
    names = ls(cid, "/workspace")
    assert not [n for n in names if n.startswith(".sandbar-upload")], names
    assert sh(cid, "stat", "-c", "%u %a", "/workspace/one.bin").strip() == "1000 644"
    # activity recorded
    r = client.get(f"/api/sandboxes/{sid}")
    assert r.json["expires_at"] >= before


def test_upload_replaces_a_file_through_the_agent(client, server):
    sb = make_sandbox(client)
    sid, cid = sb["id"], sb["container_id"]
    sh(cid, "sh", "-c", "printf 'an older and longer content' > /workspace/r.txt && chown 1000 /workspace/r.txt"
                        " && chmod 600 /workspace/r.txt")
    r = client.get(f"/api/sandboxes/{sid}/files/stat?path=/workspace/r.txt")  # the agent's channel is open
    assert r.status == 200 and r.json["size"] == 27
    since = time.time()
    data = b"new bytes\n"
    st, body = upload(server, sid, "r.txt", [data], len(data))
    ended = time.time()
    assert st == 200, body
    assert json.loads(body) == {"status": "ok", "path": "/workspace/r.txt"}
    # cut to its exact size (the tar entry was padded), replaced, no temporary left
    assert sh(cid, "cat", "/workspace/r.txt") == data.decode()
    assert sh(cid, "stat", "-c", "%s %u %a", "/workspace/r.txt").strip() == f"{len(data)} 1000 644"
    assert temporaries(cid) == []
    # the commit went through the agent: no Docker exec was made for it (the
    # one above that wrote the old file shows that execs are counted)
    assert docker.exec_starts(cid, since - 60, since) >= 1
    assert docker.exec_starts(cid, since, ended) == 0
    # a directory in the way: refused, and the temporary removed all the same
    sh(cid, "mkdir", "/workspace/adir")
    st, body = upload(server, sid, "adir", [data], len(data))
    assert st == 500 and json.loads(body)["error"]["code"] == "commit_failed", body
    until(lambda: not temporaries(cid), what="the failed upload's temporary to go")


def test_upload_into_missing_directory_and_path_rules(client, server):
    sb = make_sandbox(client)
    sid, cid = sb["id"], sb["container_id"]
    st, body = upload(server, sid, "a.txt", [b"abc"], 3, path="/workspace//new/./deep/")
    assert st == 200, body
    assert json.loads(body) == {"status": "ok", "path": "/workspace/new/deep/a.txt"}
    assert sh(cid, "cat", "/workspace/new/deep/a.txt") == "abc"
    for bad in ["/workspace/../etc", "relative", "/a/%2e%2e/b", "/a/" + "n" * 256]:
        st, body = upload(server, sid, "a.txt", [b"abc"], 3, path=bad)
        assert st == 400 and json.loads(body)["error"]["code"] == "invalid_path", (bad, body)
    for bad in ["..", "a/b"]:
        st, body = upload(server, sid, bad, [b"abc"], 3)
        assert st == 400 and json.loads(body)["error"]["code"] == "invalid_name", (bad, body)
    st, body = upload(server, sid, "a.txt", [b"abc"], 3, filename_star="a\x00b")
    assert st == 400 and json.loads(body)["error"]["code"] == "invalid_name"
    # no file part
    r = client.post(f"/api/sandboxes/{sid}/files/upload",
                    body=f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n/w\r\n--{BOUNDARY}--\r\n",
                    headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status == 400 and r.json["error"]["code"] == "no_file"
    r = client.post(f"/api/sandboxes/{sid}/files/upload", body="garbage",
                    headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_multipart"
    # the path field after the file part is refused, nothing left
    body = multipart_head("late.txt") + b"zz" + f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n/tmp\r\n--{BOUNDARY}--\r\n".encode()
    r = client.post(f"/api/sandboxes/{sid}/files/upload", body=body,
                    headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_multipart"
    until(lambda: not temporaries(cid), what="the refused upload's temporary to go")
    assert "late.txt" not in ls(cid, "/workspace")
    # a field after the file part (not path): the file is still exact
    body = multipart_head("f.txt", path="/workspace") + b"data" + f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nyyyyyyyy\r\n--{BOUNDARY}--\r\nepilogue".encode()
    r = client.post(f"/api/sandboxes/{sid}/files/upload", body=body,
                    headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status == 200, r
    assert sh(cid, "cat", "/workspace/f.txt") == "data"
    # ids
    r = client.get("/api/sandboxes/not-a-uuid/files/download?path=/x")
    assert r.status == 400 and r.json["error"]["code"] == "invalid_id"
    r = client.get(f"/api/sandboxes/{uuid.uuid4()}/files/download?path=/x")
    assert r.status == 404
    st, body = upload(server, str(uuid.uuid4()), "a.txt", [b"abc"], 3)
    assert st == 404
    r = client.get(f"/api/sandboxes/{sid}/files/download")
    assert r.status == 400 and r.json["error"]["code"] == "invalid_path"


def test_download_missing_directory_symlink(client, server):
    sb = make_sandbox(client)
    sid, cid = sb["id"], sb["container_id"]
    sh(cid, "sh", "-c", "mkdir -p /workspace/d/sub && echo hi > /workspace/d/f && ln -s d/f /workspace/link && ln -s /nowhere /workspace/dangling")
    r = client.get(f"/api/sandboxes/{sid}/files/download?path=/workspace/nope")
    assert r.status == 404 and r.json["error"]["code"] == "not_found"
    r = client.get(f"/api/sandboxes/{sid}/files/download?path=/workspace/d")
    assert r.status == 400 and r.json["error"]["code"] == "is_a_directory"
    r = client.get(f"/api/sandboxes/{sid}/files/download?path=/workspace/d&format=tar")
    assert r.status == 200 and r.header("Content-Type") == "application/x-tar"
    names = sorted(tarfile.open(fileobj=io.BytesIO(r.body)).getnames())
    assert names == ["d", "d/f", "d/sub"]
    r = client.get(f"/api/sandboxes/{sid}/files/download?path=/workspace/link")
    assert r.status == 200 and r.body == b"hi\n"
    assert r.header("Content-Disposition") == 'attachment; filename="f"'
    r = client.get(f"/api/sandboxes/{sid}/files/download?path=/workspace/dangling")
    assert r.status == 404


def test_upload_limit_and_abort_leave_nothing(server_factory):
    srv = server_factory(env={"UPLOAD_LIMIT": "1m"})
    c = srv.client()
    sb = make_sandbox(c)
    sid, cid = sb["id"], sb["container_id"]
    size = 3 << 20
    st, body = upload(srv, sid, "big.bin", [b"\0" * size], size)
    assert st == 413 and json.loads(body)["error"]["code"] == "too_large"
    size = (1 << 20) + 100  # within the request slack, over the file limit
    st, body = upload(srv, sid, "big.bin", [b"\0" * size], size)
    assert st == 413
    st, body = upload(srv, sid, "ok.bin", [b"\1" * 1000], 1000)
    assert st == 200
    # a client that goes away half way, once its bytes are landing in the sandbox
    head = multipart_head("aborted.bin")
    s = socket.create_connection((srv.host, srv.port))
    s.sendall((f"POST /api/sandboxes/{sid}/files/upload HTTP/1.1\r\nHost: x\r\n"
               f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
               f"Content-Length: {len(head) + 900000 + len(TAIL)}\r\n\r\n").encode() + head + b"a" * 400000)
    until(lambda: temporaries_now(c, sid), what="the upload's temporary in /workspace")
    mark = srv.log_mark()
    s.close()
    assert srv.wait_log(f"POST /api/sandboxes/{sid}/files/upload 499", since=mark)
    until(lambda: not temporaries(cid), what="the aborted upload's temporary to go")
    names = ls(cid, "/workspace")
    assert "ok.bin" in names and "aborted.bin" not in names, names
    assert not [n for n in names if n.startswith(".sandbar-upload")], names
    assert "big.bin" not in names
    c.close()


ASAN_SMALL_QUARANTINE = ("abort_on_error=0:detect_leaks=1:exitcode=23:strict_string_checks=1:"
                         "quarantine_size_mb=1:thread_local_quarantine_size_kb=64")


def test_big_round_trip_streams_with_flat_rss(server_factory):
    # ASan keeps freed memory in a 256 MiB quarantine by default: shrink it so
    # the RSS measures what sandbard holds, not what ASan holds back
    server = server_factory(env={"ASAN_OPTIONS": ASAN_SMALL_QUARANTINE})
    client = server.client()
    sb = make_sandbox(client)
    sid = sb["id"]
    size = 100 << 20
    h = hashlib.sha256()
    with server.rss_peak() as peak:
        st, body = upload(server, sid, "big.bin", mib_chunks(size, h), size)
        assert st == 200, body
        r, _, n, digest = download(server, sid, "/workspace/big.bin", sink=True)
    assert r.status == 200 and n == size and digest == h.hexdigest()
    assert r.getheader("Content-Type") == "application/octet-stream"
    growth_mb = peak.grew_kb() / 1024
    assert growth_mb < 24, f"sandbard RSS grew {growth_mb:.1f} MiB during a 100 MB transfer"


def test_concurrent_uploads_to_different_sandboxes(client, server):
    sbs = [make_sandbox(client) for _ in range(2)]
    results = {}

    def go(sb, k):
        data = bytes([k]) * (5 << 20)
        results[k] = upload(server, sb["id"], f"c{k}.bin", [data[i:i + 65536] for i in range(0, len(data), 65536)], len(data))

    ts = [threading.Thread(target=go, args=(sb, k)) for k, sb in enumerate(sbs)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    for k, sb in enumerate(sbs):
        assert results[k][0] == 200, results[k]
        r, _, n, digest = download(server, sb["id"], f"/workspace/c{k}.bin", sink=True)
        assert n == 5 << 20 and digest == hashlib.sha256(bytes([k]) * (5 << 20)).hexdigest()


def test_uploads_with_one_request_id_into_one_folder(client, server):
    """A client that reuses its X-Request-Id: two uploads into one folder at
    once land whole and leave no temporary (their temporaries' names differ
    by a random part; dockerd's lock on the container for a whole archive PUT
    hides most of a clash, not a MOVE racing the next PUT)."""
    sid = make_sandbox(client)["id"]
    results = {}
    half = threading.Barrier(2)

    def go(k):
        data = bytes([k + 1]) * (4 << 20)

        def chunks():
            for i in range(0, len(data), 65536):
                if i == len(data) // 2:
                    half.wait(timeout=60)  # both temporaries begun before either ends
                yield data[i:i + 65536]

        results[k] = upload(server, sid, f"same{k}.bin", chunks(), len(data), headers={"X-Request-Id": "reused-id-1"})

    ts = [threading.Thread(target=go, args=(k,)) for k in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    for k in range(2):
        assert results[k][0] == 200, results[k]
        _, _, n, digest = download(server, sid, f"/workspace/same{k}.bin", sink=True)
        assert n == 4 << 20 and digest == hashlib.sha256(bytes([k + 1]) * (4 << 20)).hexdigest()
    assert temporaries_now(client, sid) == []


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, mode, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.uid = ti.gid = 1000
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_archive_round_trip_modes_and_escapes(client, server):
    sb = make_sandbox(client)
    sid, cid = sb["id"], sb["container_id"]
    tree = [("proj", "dir", 0o755, None), ("proj/run.sh", "file", 0o755, b"#!/bin/sh\necho hi\n"),
            ("proj/secret", "file", 0o600, b"s"), ("proj/sub", "dir", 0o700, None),
            ("proj/sub/" + "n" * 150, "file", 0o644, b"long"), ("proj/ln", "sym", 0o777, "run.sh")]
    r = client.put(f"/api/sandboxes/{sid}/files/archive?path=/workspace", body=tar_bytes(tree))
    assert r.status == 200, r
    assert r.json == {"status": "ok", "path": "/workspace"}
    assert sh(cid, "stat", "-c", "%a", "/workspace/proj/run.sh", "/workspace/proj/secret", "/workspace/proj/sub").split() == ["755", "600", "700"]
    r = client.get(f"/api/sandboxes/{sid}/files/archive?path=/workspace/proj")
    assert r.status == 200 and r.header("Content-Type") == "application/x-tar"
    assert r.header("Content-Disposition") == 'attachment; filename="proj.tar"'
    tf = tarfile.open(fileobj=io.BytesIO(r.body))
    got = {m.name: (m.mode & 0o7777, m.type) for m in tf.getmembers()}
    assert got["proj/run.sh"] == (0o755, tarfile.REGTYPE) and got["proj/secret"][0] == 0o600
    assert got["proj/sub"][0] == 0o700 and got["proj/ln"][1] == tarfile.SYMTYPE
    assert tf.extractfile("proj/sub/" + "n" * 150).read() == b"long"
    for bad in [[("../evil", "file", 0o644, b"x")], [("/abs", "file", 0o644, b"x")],
                [("a", "sym", 0o777, "../../etc/passwd")], [("a", "sym", 0o777, "/etc/passwd")]]:
        r = client.put(f"/api/sandboxes/{sid}/files/archive?path=/workspace/proj", body=tar_bytes(bad))
        assert r.status == 400 and r.json["error"]["code"] == "invalid_tar", (bad, r)
    assert "evil" not in ls(cid, "/workspace")
    r = client.put(f"/api/sandboxes/{sid}/files/archive?path=/workspace/proj", body=b"not a tar" * 100)
    assert r.status == 400
    r = client.put(f"/api/sandboxes/{sid}/files/archive?path=/workspace/missing", body=tar_bytes(tree))
    assert r.status == 404


def test_files_on_a_stopped_sandbox(client, server):
    sb = make_sandbox(client)
    sid, cid = sb["id"], sb["container_id"]
    docker._docker("stop", "-t", "1", cid)
    assert not docker.running(cid)
    st, body = upload(server, sid, "cold.txt", [b"cold data"], 9, path="/workspace/c")
    assert st == 200, body
    assert json.loads(body) == {"status": "ok", "path": "/workspace/c/cold.txt"}
    r, got, _, _ = download(server, sid, "/workspace/c/cold.txt")
    assert r.status == 200 and got == b"cold data"
    r = client.get(f"/api/sandboxes/{sid}/files/archive?path=/workspace/c")
    assert r.status == 200
    # a client that goes away half way leaves nothing under the final name
    # (uploads to a stopped sandbox are spooled and sent only once whole)
    head = multipart_head("half.bin")
    s = socket.create_connection((server.host, server.port))
    s.sendall((f"POST /api/sandboxes/{sid}/files/upload HTTP/1.1\r\nHost: x\r\n"
               f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
               f"Content-Length: {len(head) + 900000 + len(TAIL)}\r\n\r\n").encode() + head + b"a" * 400000)
    until(lambda: server.open_files("/tmp"), what="the upload's spool file")
    mark = server.log_mark()
    s.close()
    assert server.wait_log(f"POST /api/sandboxes/{sid}/files/upload 499", since=mark)
    until(lambda: not server.open_files("/tmp"), what="the aborted upload's spool file to close")
    r, got, _, _ = download(server, sid, "/workspace/half.bin")
    assert r.status == 404, (r.status, got[:100])
    assert not docker.running(cid)
