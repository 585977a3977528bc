"""POST /api/sandboxes/{id}/execute against the real dockerd and agent: monza's
shape, exit codes, streams, stdin, env, cwd, timeouts, binary output, the
event streams, bad input and concurrency."""
import base64
import concurrent.futures
import hashlib
import http.client
import json
import socket
import time

import pytest

from commands_util import event_bytes, execute, field, make_sandbox, parse_ndjson, parse_sse
from harness import docker, pg
from harness.wait import until

EXEC_KEYS = {"output", "exitCode", "truncated", "stdout", "stderr", "exit_code", "duration_ms", "timed_out"}


@pytest.fixture
def sandbox(client):
    sb = make_sandbox(client, env_vars={"FROM_CREATE": "yes"})
    yield sb
    client.delete(f"/api/sandboxes/{sb['id']}")


def test_monza_shape_and_exit_codes(client, sandbox):
    sid = sandbox["id"]
    r = execute(client, sid, "echo hello")
    assert r.status == 200, r
    assert set(r.json) == EXEC_KEYS
    assert r.json["output"] == "hello\n" and r.json["stdout"] == "hello\n" and r.json["stderr"] == ""
    assert r.json["exitCode"] == 0 and r.json["exit_code"] == 0
    assert r.json["truncated"] is False and r.json["timed_out"] is False
    assert isinstance(r.json["duration_ms"], int) and r.json["duration_ms"] >= 0
    assert execute(client, sid, "exit 3").json["exitCode"] == 3
    r = execute(client, sid, "kill -9 $$")
    assert r.json["exitCode"] == 137 and r.json["exit_code"] == 137


def test_streams_separated_and_ordered(client, sandbox):
    r = execute(client, sandbox["id"], "for i in 1 2 3; do echo out$i; echo err$i >&2; done")
    assert r.json["stdout"] == "out1\nout2\nout3\n"
    assert r.json["stderr"] == "err1\nerr2\nerr3\n"
    assert sorted(r.json["output"].splitlines()) == sorted(["out1", "out2", "out3", "err1", "err2", "err3"])


def test_argv_is_not_a_shell(client, sandbox):
    r = execute(client, sandbox["id"], ["echo", "$HOME;", "`id`", "|", "&&", "*"])
    assert r.json["stdout"] == "$HOME; `id` | && *\n"


def test_truncation(client, sandbox):
    r = execute(client, sandbox["id"], "head -c 100000 /dev/zero | tr '\\0' a", max_output_bytes=1000)
    assert r.json["truncated"] is True
    assert r.json["output"] == "a" * 1000 and r.json["stdout"] == "a" * 1000
    assert r.json["exitCode"] == 0
    # the default keeps 65536
    r = execute(client, sandbox["id"], "head -c 70000 /dev/zero | tr '\\0' b")
    assert r.json["truncated"] is True and len(r.json["output"]) == 65536


def test_stdin_env_cwd_user(client, sandbox):
    sid = sandbox["id"]
    r = execute(client, sid, "cat; echo; echo done", stdin="piped in")
    assert r.json["stdout"] == "piped in\ndone\n"
    r = execute(client, sid, "echo $FROM_CREATE $ONLY_HERE", env={"ONLY_HERE": "here"})
    assert r.json["stdout"] == "yes here\n"
    r = execute(client, sid, "echo [$ONLY_HERE]")
    assert r.json["stdout"] == "[]\n"  # does not leak into the next command
    assert execute(client, sid, "pwd").json["stdout"] == "/workspace\n"
    assert execute(client, sid, "pwd", cwd="/tmp").json["stdout"] == "/tmp\n"
    assert execute(client, sid, "id -un").json["stdout"] == "sandbox\n"
    assert execute(client, sid, "id -un", user="root").json["stdout"] == "root\n"


def test_timeout_kills_the_tree(client, sandbox):
    sid = sandbox["id"]
    t0 = time.monotonic()
    r = execute(client, sid, "sleep 300 & sleep 301 & (sleep 302; true) & wait", timeout=1)
    assert r.status == 200
    assert r.json["timed_out"] is True
    assert time.monotonic() - t0 < 10
    ps = execute(client, sid, ["ps", "-eo", "args"]).json["stdout"]
    assert "sleep 30" not in ps, ps


def test_binary_output_intact(client, sandbox):
    r = execute(client, sandbox["id"], "printf '\\377\\000\\001abc'; printf '\\376' >&2")
    assert r.json["encoding"] == "base64"
    assert field(r.json, "stdout") == b"\xff\x00\x01abc"
    assert field(r.json, "stderr") == b"\xfe"
    assert set(r.json) == EXEC_KEYS | {"encoding"}
    r = execute(client, sandbox["id"], "printf 'h\\303\\251'")
    assert r.json["stdout"] == "hé" and "encoding" not in r.json


@pytest.mark.parametrize("accept", ["text/event-stream", "application/x-ndjson"])
def test_event_stream(client, sandbox, accept):
    r = client.post(f"/api/sandboxes/{sandbox['id']}/execute",
                    json={"command": "echo a; echo b >&2; printf '\\377'; exit 4"},
                    headers={"Accept": accept})
    assert r.status == 200 and r.header("Content-Type") == accept
    events = parse_sse(r.body) if accept == "text/event-stream" else parse_ndjson(r.body)
    assert events[0]["type"] == "start" and events[0]["pid"] > 0
    assert events[-1]["type"] == "exit" and events[-1]["exit_code"] == 4 and events[-1]["timed_out"] is False
    assert event_bytes(events, ("stdout",)) == b"a\n\xff"
    assert event_bytes(events, ("stderr",)) == b"b\n"
    if accept == "text/event-stream":
        out = [e for e in events if e["type"] in ("stdout", "stderr")]
        assert all(int(e["id"]) == e["offset"] + len(field(e, "data")) for e in out)


def slow_post(server, path, body, accept, read=65536, pause=0.01, rcvbuf=65536, timeout=120):
    """POSTs JSON and reads the answer at most `read` bytes per `pause`
    seconds through a small receive buffer: a client far slower than the
    command writes. Returns the body, chunked framing removed."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: no autotuning
    sock.settimeout(timeout)
    sock.connect((server.host, server.port))
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    conn.sock = sock
    conn.request("POST", path, body=json.dumps(body), headers={"Accept": accept, "Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.status
    out = []
    while True:
        b = r.read(read)
        if not b:
            break
        out.append(b)
        time.sleep(pause)
    conn.close()
    return b"".join(out)


def check_x_stream(events, size):
    """Every byte of `size` bytes of 'x' in order, offsets contiguous, no gap."""
    assert events[-1]["type"] == "exit" and events[-1]["exit_code"] == 0
    assert events[-1]["offset"] == size
    assert [e for e in events if e["type"] == "gap"] == []
    at = 0
    digest = hashlib.sha256()
    for e in events:
        if e["type"] in ("stdout", "stderr"):
            assert e["type"] == "stdout" and e["offset"] == at, (e["type"], e["offset"], at)
            data = field(e, "data")
            digest.update(data)
            at += len(data)
    assert at == size
    assert digest.hexdigest() == hashlib.sha256(b"x" * size).hexdigest()


def test_megabytes_streamed_flat_memory(server_factory):
    """Every byte arrives, in order and intact, however fast the command
    writes and however slowly the client reads (the agent holds it while the
    stream is a ring behind), and the server's memory stays flat at every
    instant: the stream is bounded by the window, not by the output. Without
    the backpressure on a slow reader the peak grows by the whole output
    (measured: 11 MB more for 10 MB), far past the bound here."""
    # ASan's quarantine would hold every freed buffer: keep it small here
    server = server_factory(env={"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:exitcode=23:"
                                                 "quarantine_size_mb=4:thread_local_quarantine_size_kb=64"})
    client = server.client()
    sandbox = make_sandbox(client)
    sid = sandbox["id"]

    def command(size):
        return {"command": f"head -c {size} /dev/zero | tr '\\0' x"}

    client.post(f"/api/sandboxes/{sid}/execute", json={"command": "head -c 1000000 /dev/zero"},
                headers={"Accept": "text/event-stream"})  # warm up the allocator
    with server.rss_peak() as peak:
        # 20 MB to a reader at ~6 MB/s through a 64 KiB socket buffer
        body = slow_post(server, f"/api/sandboxes/{sid}/execute", command(20_000_000), "text/event-stream")
        check_x_stream(parse_sse(body), 20_000_000)
        slow_grew = peak.grew_kb()
        # 10 MB to a reader at full speed
        r = client.post(f"/api/sandboxes/{sid}/execute", json=command(10_000_000),
                        headers={"Accept": "application/x-ndjson"}, timeout=120)
        assert r.status == 200, r
        check_x_stream(parse_ndjson(r.body), 10_000_000)
    assert slow_grew < 8_000, f"server peaked {slow_grew} kB above its start streaming 20 MB to a slow reader"
    assert peak.grew_kb() < 8_000, f"server peaked {peak.grew_kb()} kB above its start streaming 30 MB"
    client.delete(f"/api/sandboxes/{sid}")


def test_window_larger_than_the_ring_streams(server_factory):
    """A window of more than four times the agent's ring (SANDBAR_STREAM_WINDOW
    4m, SANDBAR_COMMAND_OUTPUT_BUFFER 512k): the acknowledgements follow the
    ring, so a lossless stream past the ring does not wait forever for one."""
    server = server_factory(env={"SANDBAR_STREAM_WINDOW": "4m"})
    client = server.client()
    sid = make_sandbox(client)["id"]
    r = client.post(f"/api/sandboxes/{sid}/execute", json={"command": "head -c 3000000 /dev/zero | tr '\\0' x"},
                    headers={"Accept": "application/x-ndjson"}, timeout=30)
    assert r.status == 200, r
    check_x_stream(parse_ndjson(r.body), 3_000_000)
    client.delete(f"/api/sandboxes/{sid}")


def test_bad_input(client, sandbox):
    sid = sandbox["id"]
    cases = [
        ({}, "invalid_command"),
        ({"command": ""}, "invalid_command"),
        ({"command": []}, "invalid_command"),
        ({"command": 5}, "invalid_command"),
        ({"command": "true", "env": {"A": 1}}, "invalid_env"),
        ({"command": "true", "env": {"A=B": "1"}}, "invalid_env"),
        ({"command": "true", "env": {"": "1"}}, "invalid_env"),
        ({"command": "true", "timeout": -1}, "invalid_timeout"),
        ({"command": "true", "timeout": "10"}, "invalid_timeout"),
        ({"command": "true", "cwd": 7}, "invalid_cwd"),
        ({"command": "true", "max_output_bytes": -5}, "invalid_max_output_bytes"),
    ]
    for body, code in cases:
        r = client.post(f"/api/sandboxes/{sid}/execute", json=body)
        assert r.status == 400 and r.json["error"]["code"] == code, (body, r)
    r = client.post(f"/api/sandboxes/{sid}/execute", body=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status == 400
    r = execute(client, "00000000-0000-4000-8000-000000000000", "true")
    assert r.status == 404 and r.json["error"]["code"] == "not_found"
    r = execute(client, "not-a-uuid", "true")
    assert r.status == 400 and r.json["error"]["code"] == "invalid_id"
    r = execute(client, sid, "true", cwd="/no/such/dir")
    assert r.status == 400 and r.json["error"]["code"] == "spawn_failed"


def test_not_running_is_409(client):
    sb = make_sandbox(client)
    assert client.delete(f"/api/sandboxes/{sb['id']}").status == 204
    r = execute(client, sb["id"], "true")
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_running"
    assert "deleted" in r.json["error"]["message"]


def test_exec_is_activity(client, sandbox):
    sid = sandbox["id"]
    before = client.get(f"/api/sandboxes/{sid}").json
    time.sleep(1.1)
    execute(client, sid, "true")
    after = client.get(f"/api/sandboxes/{sid}").json
    assert after["expires_at"] > before["expires_at"]


def test_concurrent_execs_over_sandboxes(client, server):
    sandboxes = []
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            sandboxes = list(pool.map(lambda _: make_sandbox(server.client()), range(20)))

        def one(i):
            c = server.client()
            sb = sandboxes[i % 20]
            r = execute(c, sb["id"], f"echo {i}; echo e{i} >&2; exit {i % 7}")
            c.close()
            return i, r

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one, range(200)))
        for i, r in results:
            assert r.status == 200, r
            assert r.json["stdout"] == f"{i}\n" and r.json["stderr"] == f"e{i}\n"
            assert r.json["exitCode"] == i % 7
    finally:
        for sb in sandboxes:
            client.delete(f"/api/sandboxes/{sb['id']}")


def test_concurrent_runs_share_one_answer(client, server):
    """Runs of one sandbox that arrive together share one lookup of it: every
    one of them gets its answer, a success or the same failure."""
    sb = make_sandbox(client)

    def burst(sid):
        def one(i):
            c = server.client()
            r = execute(c, sid, ["echo", str(i)])
            c.close()
            return i, r

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            return list(pool.map(one, range(20)))

    for i, r in burst(sb["id"]):
        assert r.status == 200 and r.json["stdout"] == f"{i}\n", r
    assert client.delete(f"/api/sandboxes/{sb['id']}").status == 204
    for _, r in burst(sb["id"]):
        assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_running", r
    for _, r in burst("00000000-0000-4000-8000-000000000000"):
        assert r.status == 404 and r.json["error"]["code"] == "not_found", r


def test_another_instance_change_shows_at_once(server_factory):
    """Two instances share a database: what one changes (a delete) the other's
    cache forgets at once (NOTIFY), though it runs commands in that sandbox
    in a steady stream; a change written behind sandbard's back shows once
    the listening connection comes back (its cache is read again)."""
    a = server_factory()
    b = server_factory(env={"DATABASE_URL": a.database_url, "SANDBAR_CLUSTER": a.database})
    ca, cb = a.client(), b.client()
    sid = make_sandbox(ca)["id"]
    gone = make_sandbox(ca)["id"]
    try:
        for _ in range(20):  # a's cache holds both, b's too
            assert execute(ca, sid, ["true"]).status == 200
            assert execute(ca, gone, ["true"]).status == 200
        assert cb.get(f"/api/sandboxes/{gone}").json["status"] == "running"
        assert cb.delete(f"/api/sandboxes/{gone}").status == 204
        t0 = time.monotonic()
        r = until(lambda: (lambda r: r.status == 409 and r)(execute(ca, gone, ["true"])), timeout=5,
                  what="a to see b's delete")
        assert time.monotonic() - t0 < 1.0, "the delete showed late: not through NOTIFY"
        assert r.json["error"] == {"code": "sandbox_not_running", "message": "sandbox is deleted",
                                   "status": "deleted"}
        assert ca.get(f"/api/sandboxes/{gone}").json["status"] == "deleted"
        # behind sandbard's back (no NOTIFY): cached until the listener comes back
        pg.psql(f"UPDATE sandboxes SET name = 'renamed' WHERE id = '{sid}'", url=a.database_url)
        assert ca.get(f"/api/sandboxes/{sid}").json["name"] != "renamed"
        pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{a.database}' AND pid <> pg_backend_pid()", url=a.database_url)
        until(lambda: ca.get(f"/api/sandboxes/{sid}").json.get("name") == "renamed", timeout=10,
              what="the rename to show after the listener reconnected")
    finally:
        ca.delete(f"/api/sandboxes/{sid}")


