"""The native file API through the sandbox agent, against the real dockerd:
content round trips (sha256), Range, read as a document (truncation, images),
edit, mkdir/move/delete, stat, list, ownership, aborted and oversized PUTs,
and the error answers with their exact codes."""
import hashlib
import http.client
import os
import socket
import struct
import time
import urllib.parse
import zlib

import pytest

from harness import docker
from harness.wait import until


def q(path):
    return urllib.parse.quote(path, safe="")


@pytest.fixture(scope="module")
def fsrv(run):
    with run.own_server(f"{run.run_id}_files_api", env={"UPLOAD_LIMIT": "20m"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def fc(fsrv):
    return fsrv.client()


@pytest.fixture(scope="module")
def sid(fc):
    r = fc.post("/api/sandboxes", json={"template": "base"})
    assert r.status == 201, r
    yield r.json["id"]
    fc.delete(f"/api/sandboxes/{r.json['id']}")


def container_of(fc, sid):
    return fc.get(f"/api/sandboxes/{sid}").json["container_id"]


def sh(fc, sid, command):
    r = fc.post(f"/api/sandboxes/{sid}/execute", json={"command": command})
    assert r.status == 200, r
    return r.json


def temporaries(fc, sid, folder="/workspace"):
    """The agent's write temporaries (`.sandbar-*`) in folder."""
    return [n for n in sh(fc, sid, f"ls -A {folder}")["stdout"].split() if n.startswith(".sandbar-")]


def put(srv, sid, path, data, mode=None, headers=None):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=120)
    url = f"/api/sandboxes/{sid}/files/content?path={q(path)}" + (f"&mode={mode}" if mode else "")
    try:
        conn.request("PUT", url, body=data, headers=headers or {})
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered early (413): the answer is still there to read
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def get(srv, sid, path, headers=None):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=120)
    conn.request("GET", f"/api/sandboxes/{sid}/files/content?path={q(path)}", headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r, body


def tiny_png():
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [0, 1, 10 * 1000 * 1000])
def test_content_round_trip(fsrv, fc, sid, size):
    data = os.urandom(size)
    path = f"/workspace/rt/{size}.bin"
    status, body = put(fsrv, sid, path, data)
    assert status in (200, 201), body
    assert fc.get(f"/api/sandboxes/{sid}/files/stat?path={q(path)}").json["size"] == size
    r, got = get(fsrv, sid, path)
    assert r.status == 200
    assert int(r.getheader("Content-Length")) == size
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def test_put_answer_created_then_replaced_and_mode(fsrv, fc, sid):
    path = "/workspace/put/new dir/é file.txt"
    status, body = put(fsrv, sid, path, b"one", mode="0600")
    assert status == 201
    assert body == b'{"path":"/workspace/put/new dir/\\u00e9 file.txt","size":3}' or (
        status == 201 and b'"size":3' in body
    )
    status, body = put(fsrv, sid, path, b"second")
    assert status == 200 and b'"size":6' in body
    st = fc.get(f"/api/sandboxes/{sid}/files/stat?path={q(path)}").json
    assert st["mode"] == "0644" and st["size"] == 6
    put(fsrv, sid, path, b"x", mode="755")
    assert fc.get(f"/api/sandboxes/{sid}/files/stat?path={q(path)}").json["mode"] == "0755"


def test_ownership_is_the_sandbox_user(fsrv, fc, sid):
    put(fsrv, sid, "/workspace/owned/deep/file.txt", b"mine")
    for p in ("/workspace/owned/deep/file.txt", "/workspace/owned/deep", "/workspace/owned"):
        st = fc.get(f"/api/sandboxes/{sid}/files/stat?path={q(p)}").json
        assert st["uid"] == 1000 and st["gid"] == 1000, (p, st)
    out = sh(fc, sid, "stat -c %U /workspace/owned/deep/file.txt")
    assert out["stdout"].strip() == "sandbox"


def test_sandbox_user_cannot_write_root_paths(fsrv, fc, sid):
    status, body = put(fsrv, sid, "/etc/sandbar-test", b"no")
    assert status == 403 and b'"permission_denied"' in body
    r = fc.post(f"/api/sandboxes/{sid}/files/read", json={"path": "/etc/shadow"})
    assert r.status == 403 and r.json["error"]["code"] == "permission_denied"


def test_range_requests(fsrv, sid):
    data = bytes(range(256)) * 40  # 10240 bytes
    put(fsrv, sid, "/workspace/range.bin", data)
    r, b = get(fsrv, sid, "/workspace/range.bin", {"Range": "bytes=10-19"})
    assert r.status == 206 and b == data[10:20]
    assert r.getheader("Content-Range") == "bytes 10-19/10240"
    assert r.getheader("Content-Length") == "10"
    r, b = get(fsrv, sid, "/workspace/range.bin", {"Range": "bytes=10200-"})
    assert r.status == 206 and b == data[10200:]
    r, b = get(fsrv, sid, "/workspace/range.bin", {"Range": "bytes=-5"})
    assert r.status == 206 and b == data[-5:]
    assert r.getheader("Content-Range") == "bytes 10235-10239/10240"
    r, b = get(fsrv, sid, "/workspace/range.bin", {"Range": "bytes=10000-99999"})
    assert r.status == 206 and b == data[10000:]
    r, b = get(fsrv, sid, "/workspace/range.bin", {"Range": "bytes=20000-"})
    assert r.status == 416 and r.getheader("Content-Range") == "bytes */10240"
    # several ranges: the whole file
    r, b = get(fsrv, sid, "/workspace/range.bin", {"Range": "bytes=0-1,5-6"})
    assert r.status == 200 and b == data


def test_content_type_and_errors(fsrv, fc, sid):
    put(fsrv, sid, "/workspace/img.png", tiny_png())
    r, b = get(fsrv, sid, "/workspace/img.png")
    assert r.getheader("Content-Type") == "image/png"
    r, b = get(fsrv, sid, "/workspace/nope.txt")
    assert r.status == 404 and b'"not_found"' in b
    r, b = get(fsrv, sid, "/workspace")
    assert r.status == 400 and b'"is_a_directory"' in b
    r, b = get(fsrv, sid, "workspace/relative")
    assert r.status == 400 and b'"invalid_path"' in b
    r, b = get(fsrv, sid, "/workspace/../etc/passwd")
    assert r.status == 400 and b'"invalid_path"' in b


def test_read_text_truncation_utf8(fsrv, fc, sid):
    small = "héllo\n"
    put(fsrv, sid, "/workspace/small.txt", small.encode())
    r = fc.post(f"/api/sandboxes/{sid}/files/read", json={"path": "/workspace/small.txt"})
    assert r.status == 200
    assert r.json == {
        "type": "text",
        "content": small,
        "truncated": False,
        "mime_type": "text/plain; charset=utf-8",
        "size": 7,
    }
    # 200 KiB - 1 ASCII byte then a 3-byte character: the cut must not split it
    big = ("a" * (200 * 1024 - 1) + "€" + "b" * 1000).encode()
    put(fsrv, sid, "/workspace/big.txt", big)
    r = fc.post(f"/api/sandboxes/{sid}/files/read", json={"path": "/workspace/big.txt"})
    assert r.status == 200 and r.json["type"] == "text" and r.json["truncated"] is True
    assert r.json["content"] == "a" * (200 * 1024 - 1)
    assert r.json["size"] == len(big)
    exact = b"z" * (200 * 1024)
    put(fsrv, sid, "/workspace/exact.txt", exact)
    r = fc.post(f"/api/sandboxes/{sid}/files/read", json={"path": "/workspace/exact.txt"})
    assert r.json["truncated"] is False and len(r.json["content"]) == 200 * 1024


def test_read_image_and_binary(fsrv, fc, sid):
    import base64

    png = tiny_png()
    put(fsrv, sid, "/workspace/pic.dat", png)  # by content, not by name
    r = fc.post(f"/api/sandboxes/{sid}/files/read", json={"path": "/workspace/pic.dat"})
    assert r.status == 200
    assert r.json == {"type": "image", "mime_type": "image/png", "data": base64.b64encode(png).decode(), "size": len(png)}
    blob = b"\x00\x01\x02\xff" * 10
    put(fsrv, sid, "/workspace/blob.bin", blob)
    r = fc.post(f"/api/sandboxes/{sid}/files/read", json={"path": "/workspace/blob.bin"})
    assert r.json["type"] == "binary" and base64.b64decode(r.json["data"]) == blob
    assert r.json["truncated"] is False
    r = fc.post(f"/api/sandboxes/{sid}/files/read", json={"path": "/workspace/missing"})
    assert r.status == 404 and r.json["error"]["code"] == "not_found"


def test_edit_matches(fsrv, fc, sid):
    put(fsrv, sid, "/workspace/edit.txt", b"alpha beta beta gamma\n", mode="0640")
    url = f"/api/sandboxes/{sid}/files/edit"
    r = fc.post(url, json={"path": "/workspace/edit.txt", "old_text": "delta", "new_text": "x"})
    assert r.status == 400 and r.json["error"]["code"] == "edit_no_match"
    assert "0 times" in r.json["error"]["message"]
    r = fc.post(url, json={"path": "/workspace/edit.txt", "old_text": "beta", "new_text": "x"})
    assert r.status == 400 and r.json["error"]["code"] == "edit_ambiguous"
    assert "2 times" in r.json["error"]["message"]
    r = fc.post(url, json={"path": "/workspace/edit.txt", "old_text": "alpha", "new_text": "ALPHA!"})
    assert r.status == 200
    assert r.json["path"] == "/workspace/edit.txt" and r.json["replacements"] == 1 and r.json["message"]
    _, b = get(fsrv, sid, "/workspace/edit.txt")
    assert b == b"ALPHA! beta beta gamma\n"
    st = fc.get(f"/api/sandboxes/{sid}/files/stat?path=/workspace/edit.txt").json
    assert st["mode"] == "0640" and st["uid"] == 1000
    r = fc.post(url, json={"path": "/workspace/none.txt", "old_text": "a", "new_text": "b"})
    assert r.status == 404


def tree_listing(fc, sid, root):
    """Relative path, type, mode, size and mtime of everything under root."""
    out = sh(fc, sid, f"cd {root} && find . -printf '%p %y %m %s %T@ %l\\n' | sort")
    assert out["exit_code"] == 0, out
    return out["stdout"]


def test_move_across_file_systems(fsrv, fc, sid):
    # /workspace is the sandbox's volume, /tmp its container file system: the
    # kernel refuses the rename (EXDEV), the agent copies then removes
    base = f"/api/sandboxes/{sid}/files"
    data = os.urandom(300 * 1024 + 7)
    assert put(fsrv, sid, "/workspace/xd/tree/sub/data.bin", data, mode="0640")[0] == 201
    r = sh(fc, sid, "cd /workspace/xd/tree && printf hi > run.sh && chmod 751 run.sh && chmod 750 sub"
                    " && ln -s sub/data.bin link && touch -d @1600000000 run.sh")
    assert r["exit_code"] == 0, r
    before = tree_listing(fc, sid, "/workspace/xd/tree")
    assert "./run.sh f 751 2 1600000000" in before and "./link l 777" in before, before
    r = fc.post(base + "/move", json={"from": "/workspace/xd/tree", "to": "/tmp/xd/tree"})
    assert r.status == 200 and r.json == {"from": "/workspace/xd/tree", "to": "/tmp/xd/tree"}, r
    assert tree_listing(fc, sid, "/tmp/xd/tree") == before
    assert fc.get(base + "/stat?path=/workspace/xd/tree").json["exists"] is False
    _, b = get(fsrv, sid, "/tmp/xd/tree/sub/data.bin")
    assert b == data
    # and back, under another name; no copy left beside the destination
    r = fc.post(base + "/move", json={"from": "/tmp/xd/tree", "to": "/workspace/xd/back"})
    assert r.status == 200, r
    assert tree_listing(fc, sid, "/workspace/xd/back") == before
    assert [e["name"] for e in fc.get(base + "?path=/workspace/xd").json] == ["back"]
    assert fc.get(base + "/stat?path=/tmp/xd/tree").json["exists"] is False
    # one file, over an existing one only with overwrite
    assert put(fsrv, sid, "/tmp/xd/one.txt", b"one", mode="0600")[0] == 201
    r = fc.post(base + "/move", json={"from": "/tmp/xd/one.txt", "to": "/workspace/xd/back/run.sh"})
    assert r.status == 409 and r.json["error"]["code"] == "already_exists"
    r = fc.post(base + "/move", json={"from": "/tmp/xd/one.txt", "to": "/workspace/xd/back/run.sh",
                                      "overwrite": True})
    assert r.status == 200, r
    st = fc.get(base + "/stat?path=/workspace/xd/back/run.sh").json
    assert (st["size"], st["mode"], st["uid"]) == (3, "0600", 1000)
    assert get(fsrv, sid, "/workspace/xd/back/run.sh")[1] == b"one"
    assert fc.get(base + "?path=/tmp/xd").json == []

def test_mkdir_move_delete(fsrv, fc, sid):
    base = f"/api/sandboxes/{sid}/files"
    r = fc.post(base + "/mkdir", json={"path": "/workspace/m/a/b"})
    assert r.status == 201 and r.json == {"path": "/workspace/m/a/b", "created": True}
    r = fc.post(base + "/mkdir", json={"path": "/workspace/m/a/b"})
    assert r.status == 200 and r.json["created"] is False
    r = fc.post(base + "/mkdir", json={"path": "/workspace/m/x/y", "parents": False})
    assert r.status == 404
    put(fsrv, sid, "/workspace/m/a/b/f.txt", b"f")
    r = fc.post(base + "/move", json={"from": "/workspace/m/a/b/f.txt", "to": "/workspace/m/g.txt"})
    assert r.status == 200 and r.json == {"from": "/workspace/m/a/b/f.txt", "to": "/workspace/m/g.txt"}
    put(fsrv, sid, "/workspace/m/h.txt", b"h")
    r = fc.post(base + "/move", json={"from": "/workspace/m/h.txt", "to": "/workspace/m/g.txt"})
    assert r.status == 409 and r.json["error"]["code"] == "already_exists"
    r = fc.post(base + "/move", json={"from": "/workspace/m/h.txt", "to": "/workspace/m/g.txt", "overwrite": True})
    assert r.status == 200
    _, b = get(fsrv, sid, "/workspace/m/g.txt")
    assert b == b"h"
    r = fc.delete(base + "?path=/workspace/m/a")
    assert r.status == 409 and r.json["error"]["code"] == "directory_not_empty"
    r = fc.delete(base + "?path=/workspace/m/a&recursive=true")
    assert r.status == 200 and r.json == {"path": "/workspace/m/a", "removed": True}
    r = fc.delete(base + "?path=/workspace/m/g.txt")
    assert r.status == 200
    assert fc.get(base + "/stat?path=/workspace/m/a").json["exists"] is False
    r = fc.delete(base + "?path=/workspace/m/missing")
    assert r.status == 404
    for p in ("/", "/etc", "/usr"):
        r = fc.delete(base + f"?path={q(p)}&recursive=true")
        assert r.status == 403 and r.json["error"]["code"] == "protected_path", p


def test_stat_and_list(fsrv, fc, sid):
    base = f"/api/sandboxes/{sid}/files"
    r = fc.get(base + "/stat?path=/workspace/not/there")
    assert r.status == 200
    assert r.json == {
        "exists": False,
        "path": "/workspace/not/there",
        "size": 0,
        "is_dir": False,
        "is_file": False,
        "is_symlink": False,
        "mode": None,
        "modified_at": None,
    }
    put(fsrv, sid, "/workspace/l/one.txt", b"1")
    put(fsrv, sid, "/workspace/l/sub/two.txt", b"22")
    sh(fc, sid, "ln -s one.txt /workspace/l/link")
    st = fc.get(base + "/stat?path=/workspace/l/link").json
    assert st["exists"] and st["is_symlink"] and st["is_file"] and st["size"] == 1
    r = fc.get(base + "?path=/workspace/l")
    assert r.status == 200
    assert [e["name"] for e in r.json] == ["link", "one.txt", "sub"]
    e = r.json[1]
    assert e["path"] == "/workspace/l/one.txt" and e["size"] == 1 and e["is_dir"] is False
    assert e["mode"] == "0644" and e["modified_at"].endswith("Z")
    r = fc.get(base + "?path=/workspace/l&depth=2")
    assert [e["path"] for e in r.json] == [
        "/workspace/l/link",
        "/workspace/l/one.txt",
        "/workspace/l/sub",
        "/workspace/l/sub/two.txt",
    ]
    r = fc.get(base + "?path=/workspace/l/one.txt")
    assert r.status == 400 and r.json["error"]["code"] == "not_a_directory"
    r = fc.get(base + "?path=/workspace/nothing")
    assert r.status == 404
    r = fc.get(base + "?path=/workspace/l&depth=11")
    assert r.status == 400 and r.json["error"]["code"] == "invalid_depth"


def test_put_too_large_writes_nothing(fsrv, fc, sid):
    status, body = put(fsrv, sid, "/workspace/huge.bin", b"x" * (21 * 1000 * 1000))
    assert status == 413 and b'"too_large"' in body
    # chunked, without a Content-Length: cut at the limit
    conn = http.client.HTTPConnection(fsrv.host, fsrv.port, timeout=60)
    conn.putrequest("PUT", f"/api/sandboxes/{sid}/files/content?path=/workspace/huge2.bin")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"y" * (1 << 20)
    try:
        for _ in range(25):
            conn.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = conn.getresponse()
    assert r.status == 413
    conn.close()
    until(lambda: not temporaries(fc, sid), what="the refused PUT's temporary to go")
    assert "huge" not in sh(fc, sid, "ls -a /workspace")["stdout"]


def test_aborted_put_leaves_nothing(fsrv, fc, sid):
    put(fsrv, sid, "/workspace/keep.txt", b"original")
    s = socket.create_connection((fsrv.host, fsrv.port))
    s.sendall(
        (
            f"PUT /api/sandboxes/{sid}/files/content?path=/workspace/keep.txt HTTP/1.1\r\n"
            f"Host: x\r\nContent-Length: {8 << 20}\r\n\r\n"
        ).encode()
    )
    s.sendall(b"z" * (2 << 20))
    until(lambda: temporaries(fc, sid), what="the PUT's temporary in /workspace")
    mark = fsrv.log_mark()
    s.close()
    assert fsrv.wait_log(f"PUT /api/sandboxes/{sid}/files/content 499", since=mark)
    until(lambda: not temporaries(fc, sid), what="the aborted PUT's temporary to go")
    _, b = get(fsrv, sid, "/workspace/keep.txt")
    assert b == b"original"


def test_bad_input_and_missing_sandbox(fsrv, fc, sid):
    base = f"/api/sandboxes/{sid}/files"
    assert fc.get(base + "/stat").status == 400
    r = fc.get(base + "/stat?path=" + q("/a\x00b"))
    assert r.status == 400 and r.json["error"]["code"] == "invalid_path"
    r = fc.post(base + "/read", json={"path": "rel"})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_path"
    r = fc.get("/api/sandboxes/00000000-0000-4000-8000-000000000000/files/stat?path=/x")
    assert r.status == 404 and r.json["error"]["code"] == "not_found"
    r = fc.get("/api/sandboxes/nope/files/stat?path=/x")
    assert r.status == 400 and r.json["error"]["code"] == "invalid_id"
    status, _ = put(fsrv, sid, "/workspace/m.txt", b"x", mode="999")
    assert status == 400


def test_not_running_sandbox(fsrv, fc):
    r = fc.post("/api/sandboxes", json={"template": "base"})
    sb = r.json
    docker._docker("stop", "-t", "1", sb["container_id"])
    deadline = time.time() + 20
    while time.time() < deadline:
        st = fc.get(f"/api/sandboxes/{sb['id']}/files/stat?path=/workspace")
        if st.status == 409:
            break
        time.sleep(0.5)
    assert st.status == 409 and st.json["error"]["code"] == "sandbox_not_running"
    fc.delete(f"/api/sandboxes/{sb['id']}")
