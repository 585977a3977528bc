"""The Hermes WebSocket (spec/hermes.md §7-§10) against the real dockerd and
agent, spoken as the Vtrix sandbox-go SDK speaks it (harness/jsonrpc.py):
the dial (also to a stopped sandbox), JSON-RPC strictness, every method's
exact result shape, notification order and bounds, calls in flight answered
out of order, timeouts, kill and log replay, bytes through read and write,
read_stream chunking, a bare TCP close (also mid-read_stream, beside another
connection), a 10 MiB message closed with 1009, projects on the dial."""
import base64
import json
import os
import time

import pytest

from commands_util import make_sandbox
from harness.jsonrpc import Closed, Rpc, RpcError
from harness.wait import until
from hermes_util import API, ok, refused, wait_status

RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"


@pytest.fixture
def sandbox(client):
    sb = make_sandbox(client)
    yield sb
    client.delete(f"/api/sandboxes/{sb['id']}")


@pytest.fixture
def rpc(server, sandbox):
    r = Rpc(server, sandbox["id"])
    assert r.status == 101, r.ws.head
    yield r
    r.close()


def is_time(s):
    import re
    return isinstance(s, str) and re.match(RFC3339, s) is not None


def data_of(notes, method):
    return "".join(n["params"]["data"] for n in notes if n["method"] == method)


def test_dial_and_handshake(server, client, sandbox):
    r = Rpc(server, sandbox["id"])
    assert r.status == 101
    head = r.ws.head.lower()
    assert "sec-websocket-extensions" not in head and "sec-websocket-protocol" not in head
    r.close()
    # unknown and malformed ids: an error, never 101
    for bad in ["00000000-0000-4000-8000-000000000000", "nope"]:
        r = Rpc(server, bad)
        assert r.status != 101 and r.status >= 400, r.ws.head
        r.close()
    # several connections to one sandbox at once
    a, b = Rpc(server, sandbox["id"]), Rpc(server, sandbox["id"])
    assert a.call("exec", {"command": "echo a"})[0]["output"] == "a\n"
    assert b.call("exec", {"command": "echo b"})[0]["output"] == "b\n"
    a.close()
    b.close()


def test_jsonrpc_strictness(rpc):
    ws = rpc.ws
    # invalid JSON, a batch, a non-integer id, params not an object: answered, the socket stays
    rpc.send_raw("{not json")
    m = rpc.read_one()
    assert m["error"]["code"] == -32700 and m["id"] is None and "method" not in m
    rpc.send_raw('[{"jsonrpc":"2.0","method":"stat","params":{"path":"/"},"id":1}]')
    assert rpc.read_one()["error"]["code"] == -32600
    rpc.send_raw('{"jsonrpc":"2.0","method":"stat","params":{"path":"/"},"id":1.0}')
    m = rpc.read_one()
    assert m["error"]["code"] == -32600 and m["id"] is None
    rpc.send_raw('{"jsonrpc":"2.0","method":"stat","params":{"path":"/"},"id":"7"}')
    assert rpc.read_one()["error"]["code"] == -32600
    rpc.send_raw('{"jsonrpc":"2.0","method":"stat","params":["/"],"id":2}')
    m = rpc.read_one()
    assert m["error"]["code"] == -32602 and m["id"] == 2
    # a client notification (no id) is not answered: the next call's answer comes first
    rpc.send_raw('{"jsonrpc":"2.0","method":"stat","params":{"path":"/"}}')
    rpc.next_id = 10
    with pytest.raises(RpcError) as e:
        rpc.call("no_such_method", {})
    assert e.value.code == -32601
    with pytest.raises(RpcError) as e:
        rpc.call("exec", {})
    assert e.value.code == -32602
    with pytest.raises(RpcError) as e:
        rpc.call("exec", {"command": 5})
    assert e.value.code == -32602
    with pytest.raises(RpcError) as e:
        rpc.call("read", {"path": "/no/such/file"})
    assert e.value.code == -32001
    res, _ = rpc.call("stat", {"path": "/"})
    assert res["exists"] is True and res["is_dir"] is True
    assert ws.close_code is None


def test_exec_shapes_and_notifications(rpc):
    res, notes = rpc.call("exec", {"command": "echo out; echo err >&2; exit 3"})
    assert set(res) == {"cmd_id", "output", "exit_code", "started_at"}
    assert res["exit_code"] == 3 and res["cmd_id"] and is_time(res["started_at"])
    assert sorted(res["output"].splitlines()) == ["err", "out"]
    methods = [n["method"] for n in notes]
    assert methods[0] == "exec.start" and methods[-1] == "exec.done", methods
    assert set(methods[1:-1]) <= {"exec.stdout", "exec.stderr"}
    assert data_of(notes, "exec.stdout") == "out\n" and data_of(notes, "exec.stderr") == "err\n"
    done = notes[-1]["params"]
    assert done["output"] == res["output"] and done["exit_code"] == 3
    assert all(n["params"]["id"] == notes[0]["params"]["id"] for n in notes)
    # lots of output quickly: few notifications, every byte in order
    res, notes = rpc.call("exec", {"command": "seq 1 200000"})
    want = "".join(f"{i}\n" for i in range(1, 200001))
    assert res["output"] == want and data_of(notes, "exec.stdout") == want
    assert len(notes) <= 16, len(notes)
    # output over a few seconds: still well under the SDK's 64 events
    res, notes = rpc.call("exec", {"command": "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.3; done"})
    assert res["output"] == "".join(f"{i}\n" for i in range(1, 11))
    assert len(notes) <= 24, [n["method"] for n in notes]
    # env, working_dir, stdin then EOF, sudo, argv-style words (the SDK's quoting)
    res, _ = rpc.call("exec", {"command": "printf '%s|%s|' \"$A\" \"$(pwd)\"; cat; id -u",
                               "env": {"A": "x y"}, "working_dir": "/tmp", "stdin_data": "in\n"})
    assert res["output"] == "x y|/tmp|in\n1000\n", res
    assert rpc.call("exec", {"command": "id -u", "sudo": True})[0]["output"] == "0\n"
    res, _ = rpc.call("exec", {"command": "printf '%s\\n' 'a b' '$HOME' 'it'\\''s'"})
    assert res["output"] == "a b\n$HOME\nit's\n"
    res, _ = rpc.call("exec", {"command": "echo 'plain words' hi"})
    assert res["output"] == "plain words hi\n"
    # a fresh shell each time; a missing program is the shell's 127
    rpc.call("exec", {"command": "cd /tmp; X=1; export Y=2"})
    assert rpc.call("exec", {"command": "pwd; echo \"$X$Y\""})[0]["output"] != "/tmp\n12\n"
    res, _ = rpc.call("exec", {"command": "no-such-program arg"})
    assert res["exit_code"] == 127 and "not found" in res["output"]
    # binary output: valid JSON text, invalid bytes as U+FFFD
    res, _ = rpc.call("exec", {"command": "printf 'a\\377b'"})
    assert res["output"] == "a\ufffdb"


def test_detached_kill_and_logs(rpc):
    res, notes = rpc.call("exec", {"command": "echo started; echo oops >&2; sleep 30 & wait", "detached": True})
    assert set(res) == {"cmd_id", "pid", "started_at"} and notes == []
    assert res["pid"] > 0 and res["cmd_id"] and is_time(res["started_at"])
    cid = res["cmd_id"]
    # SIGINT reaches the whole group, background sleep included
    assert rpc.call("kill", {"cmd_id": cid, "signal": "SIGINT"})[0] is not None
    for _ in range(3):  # replayed on every call, typed, answered after the exit
        logs, notes = rpc.call("exec_logs", {"cmd_id": cid}, timeout=20)
        assert set(logs) == {"cmd_id", "output", "exit_code", "started_at"}
        assert logs["cmd_id"] == cid and logs["exit_code"] == 130, logs
        assert data_of(notes, "exec.stdout") == "started\n" and data_of(notes, "exec.stderr") == "oops\n"
        assert logs["output"] in ("started\noops\n", "oops\nstarted\n"), logs
        assert all(n["method"] in ("exec.stdout", "exec.stderr") for n in notes)
    # exec_logs of a running command waits for its exit; each signal name
    # reaches the whole process group: the shell and both sleeps of its
    # pipeline (not `&`: sh itself makes its background jobs ignore SIGINT)
    for n, (sig, code) in enumerate([("SIGTERM", 143), ("SIGKILL", 137), ("SIGINT", 130), ("SIGHUP", 129),
                                     ("", 143)]):
        pgrep = f"pgrep -f '^sleep 4{n}$' || true"
        res, _ = rpc.call("exec", {"command": f"sleep 4{n} | sleep 4{n}; echo after", "detached": True})
        rid = rpc.send("exec_logs", {"cmd_id": res["cmd_id"]})
        until(lambda: len(rpc.call("exec", {"command": pgrep})[0]["output"].split()) == 2, timeout=10)
        assert rid not in rpc.done
        rpc.call("kill", {"cmd_id": res["cmd_id"], "signal": sig})
        notes, resp = rpc.wait(rid, timeout=20)
        assert resp["result"]["exit_code"] == code, (sig, resp)
        until(lambda: rpc.call("exec", {"command": pgrep})[0]["output"] == "", timeout=10)
    with pytest.raises(RpcError):
        rpc.call("kill", {"cmd_id": cid, "signal": "SIGNOPE"})
    with pytest.raises(RpcError):
        rpc.call("exec_logs", {"cmd_id": "00000000-0000-4000-8000-000000000000"})


def test_timeout_is_an_error_and_the_connection_lives(rpc, sandbox, client):
    t0 = time.monotonic()
    with pytest.raises(RpcError) as e:
        rpc.call("exec", {"command": "echo before; sleep 30", "timeout": 1})
    assert time.monotonic() - t0 < 5
    assert "timed out" in e.value.message and e.value.code != -32001
    assert data_of(e.value.notifications, "exec.stdout") == "before\n"
    assert rpc.call("exec", {"command": "echo still"})[0]["output"] == "still\n"
    # the process group is gone
    out = rpc.call("exec", {"command": "pgrep -x sleep || true"})[0]["output"]
    until(lambda: rpc.call("exec", {"command": "pgrep -x sleep || true"})[0]["output"] == "", timeout=10)


def test_calls_in_flight_answered_as_they_finish(rpc):
    slow = rpc.send("exec", {"command": "sleep 1.5; echo slow"})
    mid = rpc.send("exec", {"command": "sleep 0.5; echo mid"})
    fast = [rpc.send("stat", {"path": "/tmp"}) for _ in range(6)]
    for rid in fast + [mid, slow]:
        rpc.wait(rid, timeout=30)
    order = rpc.order
    assert order.index(slow) > order.index(mid) > max(order.index(f) for f in fast), order
    assert rpc.done[slow]["result"]["output"] == "slow\n"


def test_files(rpc):
    blob = bytes(range(256)) * 4 + b"\x00tail\xff\xfe"
    res, _ = rpc.call("write_binary", {"data": base64.b64encode(blob).decode(), "path": "/tmp/h/bin.dat"})
    r, _ = rpc.call("read", {"path": "/tmp/h/bin.dat"})
    assert set(r) == {"type", "content", "truncated", "mime_type", "data"}
    assert r["type"] == "image" and base64.b64decode(r["data"]) == blob
    # text with NUL and control bytes: the exact bytes back either way
    text = "a\x00b\x01c — 漢字 🎉\n"
    w, _ = rpc.call("write", {"content": text, "path": "/tmp/h/t.txt"})
    assert w == {"bytes_written": len(text.encode())}
    r, _ = rpc.call("read", {"path": "/tmp/h/t.txt"})
    got = base64.b64decode(r["data"]) if r["type"] == "image" else r["content"].encode()
    assert got == text.encode()
    # plain text, empty, truncation at 200 KiB on a character boundary
    rpc.call("write", {"content": "héllo\n", "path": "/tmp/h/p.txt"})
    r, _ = rpc.call("read", {"path": "/tmp/h/p.txt"})
    assert r["type"] == "text" and r["content"] == "héllo\n" and r["truncated"] is False
    assert rpc.call("write", {"content": "", "path": "/tmp/h/e.txt"})[0] == {"bytes_written": 0}
    assert rpc.call("read", {"path": "/tmp/h/e.txt"})[0]["content"] == ""
    big = "é" * 150000  # 300000 bytes
    rpc.call("write", {"content": big, "path": "/tmp/h/big.txt"})
    r, _ = rpc.call("read", {"path": "/tmp/h/big.txt"})
    assert r["type"] == "text" and r["truncated"] is True
    assert len(r["content"].encode()) <= 200 * 1024 and big.startswith(r["content"])
    # a 512 KiB write: a ~525 KB message in 4096-byte fragments
    half = ("0123456789abcdef" * 32768)
    assert rpc.call("write", {"content": half, "path": "/tmp/h/half.txt"})[0] == {"bytes_written": 524288}
    assert rpc.call("exec", {"command": "md5sum < /tmp/h/half.txt"})[0]["output"].split()[0] == \
        __import__("hashlib").md5(half.encode()).hexdigest()
    # write truncates
    rpc.call("write", {"content": "short", "path": "/tmp/h/half.txt"})
    assert rpc.call("read", {"path": "/tmp/h/half.txt"})[0]["content"] == "short"
    # edit: exactly once
    e, _ = rpc.call("edit", {"new_text": "HELLO", "old_text": "héllo", "path": "/tmp/h/p.txt"})
    assert isinstance(e["message"], str) and e["message"]
    assert rpc.call("read", {"path": "/tmp/h/p.txt"})[0]["content"] == "HELLO\n"
    rpc.call("write", {"content": "x x", "path": "/tmp/h/twice.txt"})
    for old in ["x", "nothere"]:
        with pytest.raises(RpcError):
            rpc.call("edit", {"new_text": "y", "old_text": old, "path": "/tmp/h/twice.txt"})
    # write_binary: mode as decimal, default mode
    rpc.call("write_binary", {"data": base64.b64encode(b"#!/bin/sh\necho ran\n").decode(), "mode": 493,
                              "path": "/tmp/h/run.sh"})
    assert rpc.call("exec", {"command": "/tmp/h/run.sh; stat -c %a /tmp/h/run.sh /tmp/h/bin.dat"})[0]["output"] \
        == "ran\n755\n644\n"
    with pytest.raises(RpcError) as e:
        rpc.call("write_binary", {"data": "@@@", "path": "/tmp/h/x"})
    assert e.value.code == -32602
    # stat and list_files
    s, _ = rpc.call("stat", {"path": "/tmp/h/nope"})
    assert s == {"exists": False, "size": 0, "is_dir": False, "is_file": False, "modified_at": None}
    s, _ = rpc.call("stat", {"path": "/tmp/h/t.txt"})
    assert s["exists"] and s["is_file"] and not s["is_dir"] and s["size"] == len(text.encode())
    assert is_time(s["modified_at"])
    entries, _ = rpc.call("list_files", {"path": "/tmp/h"})
    assert isinstance(entries, list)
    names = [x["name"] for x in entries]
    assert "t.txt" in names and "bin.dat" in names
    for x in entries:
        assert set(x) == {"name", "path", "size", "is_dir", "modified_at"}
        assert x["path"] == "/tmp/h/" + x["name"] and is_time(x["modified_at"])
    with pytest.raises(RpcError):
        rpc.call("list_files", {"path": "/tmp/h/t.txt"})
    with pytest.raises(RpcError) as e:
        rpc.call("list_files", {"path": "/tmp/h/none"})
    assert e.value.code == -32001


def test_read_stream(rpc):
    blob = os.urandom(300 * 1024 + 7)
    rpc.call("write_binary", {"data": base64.b64encode(blob).decode(), "path": "/tmp/rs.bin"})
    for chunk_size, chunks_max in [(None, 64), (1000, 64), (100000, 4)]:
        params = {"path": "/tmp/rs.bin"}
        if chunk_size:
            params["chunk_size"] = chunk_size
        res, notes = rpc.call("read_stream", params)
        assert res["total_bytes"] == len(blob) and res["type"] in ("text", "image") and "mime_type" in res
        assert all(n["method"] == "read_stream.chunk" for n in notes)
        assert 1 <= len(notes) <= chunks_max, len(notes)
        got = b"".join(base64.b64decode(n["params"]["data"], validate=True) for n in notes)
        assert got == blob
    rpc.call("write", {"content": "", "path": "/tmp/rs.empty"})
    res, notes = rpc.call("read_stream", {"path": "/tmp/rs.empty"})
    assert res["total_bytes"] == 0 and notes == []
    with pytest.raises(RpcError) as e:
        rpc.call("read_stream", {"path": "/tmp/none"})
    assert e.value.code == -32001


def test_bare_close_keeps_commands_and_new_connections_work(server, sandbox):
    a, other = Rpc(server, sandbox["id"]), Rpc(server, sandbox["id"])
    res, _ = a.call("exec", {"command": "sleep 3; echo survived > /tmp/survived", "detached": True})
    a.call("exec", {"command": "head -c 8388608 /dev/urandom > /tmp/big.bin"})
    a.send("exec", {"command": "sleep 2; echo late"})  # in flight as the client drops
    # mid-read_stream: its first chunk read, the rest still coming as the client vanishes
    rid = a.send("read_stream", {"path": "/tmp/big.bin", "chunk_size": 131072})
    while not a.notes.get(rid):
        a.read_one()
    a.close()
    # the connection open beside it carries on, and so does a new one
    assert other.call("exec", {"command": "echo beside"})[0]["output"] == "beside\n"
    _, notes = other.call("read_stream", {"path": "/tmp/big.bin"})
    assert sum(len(base64.b64decode(n["params"]["data"])) for n in notes) == 8 << 20
    other.close()
    b = Rpc(server, sandbox["id"])
    assert b.call("exec", {"command": "echo fresh"})[0]["output"] == "fresh\n"
    until(lambda: b.call("exec", {"command": "cat /tmp/survived 2>/dev/null || true"})[0]["output"]
          == "survived\n", timeout=15)
    logs, _ = b.call("exec_logs", {"cmd_id": res["cmd_id"]})
    assert logs["exit_code"] == 0
    b.close()


def test_oversized_message_and_idle_connection(server, sandbox):
    r = Rpc(server, sandbox["id"])
    # quiet for a while: still open
    time.sleep(3)
    assert r.call("stat", {"path": "/"})[0]["exists"] is True
    # 10 MiB over the 8 MiB default: closed with 1009, the frame delivered
    # although the client is still writing its message as the server closes
    # (the server drops the rest rather than reset), and the server carries on
    r.send("write", {"content": "x" * (10 << 20), "path": "/tmp/huge"})
    with pytest.raises(Closed):
        while True:
            r.read_one(timeout=20)
    assert r.ws.close_code == 1009
    r.close()
    r2 = Rpc(server, sandbox["id"])
    assert r2.call("stat", {"path": "/tmp/huge"})[0]["exists"] is False
    r2.close()


def test_dial_to_a_stopped_sandbox(server, client, sandbox):
    sid = sandbox["id"]
    assert client.post(f"/api/sandboxes/{sid}/stop", timeout=120).status in (200, 202)
    until(lambda: client.get(f"/api/sandboxes/{sid}").json["status"] == "stopped", timeout=60)
    t0 = time.monotonic()
    r = Rpc(server, sid)
    assert r.status == 101 and time.monotonic() - t0 < 2
    # a call on it wakes it (auto_wake) or fails as an RPC error, never a closed socket
    for method, params in [("exec", {"command": "echo awake"}), ("stat", {"path": "/"})]:
        try:
            r.call(method, params, timeout=120)
        except RpcError as e:
            assert e.code == -32009 and "stopped" in e.message, e
    # started again, the same connection works
    assert client.post(f"/api/sandboxes/{sid}/start", timeout=120).status in (200, 202)
    until(lambda: client.get(f"/api/sandboxes/{sid}").json["status"] == "running", timeout=60)
    assert r.call("exec", {"command": "echo awake"}, timeout=60)[0]["output"] == "awake\n"
    r.close()



def dial_refusal(r):
    """The envelope of a dial answered other than 101."""
    head = r.ws.head
    n = int(next(line.split(":", 1)[1] for line in head.split("\r\n")
                 if line.lower().startswith("content-length:")))
    body = json.loads(r.ws._read(n))
    assert set(body) == {"code", "message", "data", "request_id"} and body["data"] is None, body
    return body


def test_projects_on_the_dial(server):
    """A sandbox of project A: neither REST nor the WebSocket reach it from
    project B or from the default project; from A they do (the header's
    name in any case)."""
    c = server.client()
    pa = {"X-Project-Id": "proj-a"}
    sid = ok(c.post(API, json={"user_id": "iso", "ttl_hours": 1}, headers=pa))["sandbox"]["id"]
    try:
        wait_status(c, sid, "active", headers=pa)
        for h in ({"X-Project-Id": "proj-b"}, {}, {"X-Project-Id": ""}, {"X-Project-Id": "PROJ-A"}):
            refused(c.get(f"{API}/{sid}", headers=h), 404)
            r = Rpc(server, sid, headers=h)
            assert r.status == 404, (h, r.ws.head)
            body = dial_refusal(r)
            assert body["code"] == 404 and sid in body["message"], body
            r.close()
        for h in (pa, {"x-project-id": "proj-a"}, {"X-PROJECT-ID": "proj-a"}):
            r = Rpc(server, sid, headers=h)
            assert r.status == 101, (h, r.ws.head)
            assert r.call("exec", {"command": "echo in-a"})[0]["output"] == "in-a\n"
            r.close()
        # a header that is no project: refused before any lookup
        r = Rpc(server, sid, headers={"X-Project-Id": "p" * 200})
        assert r.status == 400 and dial_refusal(r)["code"] == 400
        r.close()
    finally:
        ok(c.delete(f"{API}/{sid}", headers=pa))
