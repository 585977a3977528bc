"""Detached commands: records, logs (replay, follow, resume), stdin, signals
to the process group, the per-sandbox limit, and a sandbard killed -9 and
restarted in the middle."""
import concurrent.futures
import time

import pytest

from commands_util import event_bytes, execute, make_sandbox, parse_ndjson, parse_sse
from harness import pg
from harness.wait import until
from sandboxes import RFC3339, UUID

COMMAND_KEYS = {"id", "sandbox_id", "command", "status", "exit_code", "signal", "timed_out", "pid",
                "started_at", "ended_at", "service", "port"}


@pytest.fixture
def sandbox(client):
    sb = make_sandbox(client)
    yield sb
    client.delete(f"/api/sandboxes/{sb['id']}")


def start(client, sid, command, **kw):
    body = {"command": command}
    body.update(kw)
    r = client.post(f"/api/sandboxes/{sid}/commands", json=body)
    assert r.status == 201, r
    assert set(r.json) == {"id", "pid", "started_at"}
    assert UUID.match(r.json["id"]) and r.json["pid"] > 0 and RFC3339.match(r.json["started_at"])
    return r.json["id"]


def wait_exit(client, sid, cid, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/sandboxes/{sid}/commands/{cid}")
        assert r.status == 200, r
        if r.json["status"] != "running":
            return r.json
        assert time.monotonic() < deadline, r.json
        time.sleep(0.05)


def logs(client, sid, cid, query="", accept="application/x-ndjson", headers=None):
    h = {"Accept": accept}
    h.update(headers or {})
    r = client.get(f"/api/sandboxes/{sid}/commands/{cid}/logs{query}", headers=h, timeout=60)
    assert r.status == 200, r
    return parse_sse(r.body) if accept == "text/event-stream" else parse_ndjson(r.body)


def test_detached_record_and_logs(client, sandbox):
    sid = sandbox["id"]
    cid = start(client, sid, "echo one; sleep 0.3; echo two >&2; exit 5")
    doc = client.get(f"/api/sandboxes/{sid}/commands/{cid}").json
    assert set(doc) == COMMAND_KEYS
    assert doc["status"] == "running" and doc["command"] == "echo one; sleep 0.3; echo two >&2; exit 5"
    assert doc["service"] is False and doc["port"] is None
    # follow: live until exit
    events = logs(client, sid, cid, "?follow=1")
    assert event_bytes(events) == b"one\ntwo\n"
    assert events[-1]["type"] == "exit" and events[-1]["exit_code"] == 5
    doc = wait_exit(client, sid, cid)
    assert doc["status"] == "exited" and doc["exit_code"] == 5 and doc["signal"] is None
    assert RFC3339.match(doc["ended_at"]) and doc["timed_out"] is False
    # replay after exit, from an offset, and resumable by Last-Event-ID
    events = logs(client, sid, cid)
    assert event_bytes(events) == b"one\ntwo\n" and events[-1]["type"] == "exit"
    assert event_bytes(logs(client, sid, cid, "?offset=4")) == b"two\n"
    sse = logs(client, sid, cid, accept="text/event-stream", headers={"Last-Event-ID": "2"})
    assert event_bytes(sse) == b"e\ntwo\n"
    # list, newest first
    cid2 = start(client, sid, ["true"])
    listed = client.get(f"/api/sandboxes/{sid}/commands").json
    assert [c["id"] for c in listed] == [cid2, cid]
    assert listed[0]["command"] == ["true"]


def test_logs_without_follow_of_a_running_command(client, sandbox):
    sid = sandbox["id"]
    cid = start(client, sid, "echo early; sleep 30")

    def early():
        events = logs(client, sid, cid)
        return events if event_bytes(events) else None

    events = until(early, what="the early output")
    assert event_bytes(events) == b"early\n" and events[-1]["type"] == "end"
    client.post(f"/api/sandboxes/{sid}/commands/{cid}/signal", json={"signal": "KILL"})


def test_stdin_streamed_and_eof(client, sandbox):
    sid = sandbox["id"]
    cid = start(client, sid, "cat; echo EOF-SEEN")
    r = client.post(f"/api/sandboxes/{sid}/commands/{cid}/stdin", body=b"hello ")
    assert r.status == 204
    r = client.post(f"/api/sandboxes/{sid}/commands/{cid}/stdin?eof=1", body=b"world\n")
    assert r.status == 204
    doc = wait_exit(client, sid, cid)
    assert doc["exit_code"] == 0
    assert event_bytes(logs(client, sid, cid)) == b"hello world\nEOF-SEEN\n"
    r = client.post(f"/api/sandboxes/{sid}/commands/{cid}/stdin", body=b"late")
    assert r.status == 409 and r.json["error"]["code"] == "command_not_running"


# a non-interactive sh starts background jobs with SIGINT ignored (POSIX), so
# SIGINT is tried on a foreground child; the others on background children
def processes(client, sid):
    """The command lines of the sandbox's processes."""
    r = execute(client, sid, ["ps", "-eo", "args"])
    assert r.status == 200, r
    return r.json["stdout"].splitlines()


@pytest.mark.parametrize("sig,signo,command,children", [
    ("SIGINT", 2, "sleep 400; sleep 401", ["sleep 400"]),
    ("KILL", 9, "sleep 400 & sleep 401 & wait", ["sleep 400", "sleep 401"]),
    ("15", 15, "sleep 400 & sleep 401 & wait", ["sleep 400", "sleep 401"]),
])
def test_signal_reaches_the_group(client, sandbox, sig, signo, command, children):
    sid = sandbox["id"]
    cid = start(client, sid, command)
    until(lambda: all(c in processes(client, sid) for c in children), what=f"{children} to run")
    r = client.post(f"/api/sandboxes/{sid}/commands/{cid}/signal", json={"signal": sig})
    assert r.status == 204, r
    doc = wait_exit(client, sid, cid)
    assert doc["signal"] == signo and doc["exit_code"] == 128 + signo
    until(lambda: not [p for p in processes(client, sid) if p.startswith("sleep 40")],
          what="every process of the group to be gone")


def test_bad_input(client, sandbox):
    sid = sandbox["id"]
    cid = start(client, sid, "sleep 30")
    for body in ({"signal": "SIGFOO"}, {"signal": 0}, {"signal": 64}, {}, {"signal": None}):
        r = client.post(f"/api/sandboxes/{sid}/commands/{cid}/signal", json=body)
        assert r.status == 400 and r.json["error"]["code"] == "invalid_signal", (body, r)
    unknown = "00000000-0000-4000-8000-000000000000"
    for path in (f"/commands/{unknown}", f"/commands/{unknown}/logs", "/commands/nope"):
        r = client.get(f"/api/sandboxes/{sid}{path}")
        assert r.status == 404, (path, r)
    r = client.post(f"/api/sandboxes/{sid}/commands/{unknown}/signal", json={"signal": "TERM"})
    assert r.status == 404
    r = client.get(f"/api/sandboxes/{unknown}/commands")
    assert r.status == 404
    r = client.post(f"/api/sandboxes/{sid}/commands", json={"command": ""})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_command"
    r = client.get(f"/api/sandboxes/{sid}/commands/{cid}/logs?offset=x")
    assert r.status == 400 and r.json["error"]["code"] == "invalid_offset"
    client.post(f"/api/sandboxes/{sid}/commands/{cid}/signal", json={"signal": "KILL"})


def test_per_sandbox_limit(server_factory):
    srv = server_factory(env={"SANDBAR_MAX_COMMANDS_PER_SANDBOX": "3"})
    client = srv.client()
    sb = make_sandbox(client)
    sid = sb["id"]
    try:
        cids = [start(client, sid, "sleep 60") for _ in range(3)]
        r = client.post(f"/api/sandboxes/{sid}/commands", json={"command": "true"})
        assert r.status == 429 and r.json["error"]["code"] == "too_many_commands"
        r = execute(client, sid, "true")
        assert r.status == 429
        client.post(f"/api/sandboxes/{sid}/commands/{cids[0]}/signal", json={"signal": "KILL"})
        wait_exit(client, sid, cids[0])
        assert execute(client, sid, "true").status == 200
    finally:
        client.delete(f"/api/sandboxes/{sid}")


def test_survives_sandbard_kill(server, client, sandbox):
    sid = sandbox["id"]
    done = start(client, sid, "echo finished-before")
    wait_exit(client, sid, done)
    slow = start(client, sid, "echo start; sleep 2; echo end; exit 9")
    until(lambda: event_bytes(logs(client, sid, slow)) == b"start\n", what="the slow command's first line")
    server.restart(kill=True)
    client = server.client()
    listed = client.get(f"/api/sandboxes/{sid}/commands").json
    assert {c["id"] for c in listed} == {done, slow}
    assert event_bytes(logs(client, sid, done)) == b"finished-before\n"
    events = logs(client, sid, slow, "?follow=1")
    assert event_bytes(events) == b"start\nend\n" and events[-1]["exit_code"] == 9
    doc = wait_exit(client, sid, slow)
    assert doc["status"] == "exited" and doc["exit_code"] == 9
    rows = pg.psql(f"SELECT status FROM commands WHERE sandbox_id = '{sid}'", url=server.database_url)
    assert sorted(rows.split()) == ["exited", "exited"]


def test_agent_keeps_a_bounded_history(client, server, sandbox):
    """The agent keeps the output of the newest 1,024 exited commands; older
    ones keep their records (status, exit code) but their logs are gone (410),
    so a sandbox that runs commands forever does not grow."""
    sid = sandbox["id"]
    first = start(client, sid, ["echo", "first"])
    assert wait_exit(client, sid, first)["exit_code"] == 0
    assert event_bytes(logs(client, sid, first)) == b"first\n"

    def run(n):
        c = server.client()
        for i in range(n):
            r = execute(c, sid, ["true"])
            assert r.status == 200 and r.json["exitCode"] == 0, r
        c.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(run, [130] * 8))  # 1,040 more: past the bound
    last = start(client, sid, ["echo", "last"])
    wait_exit(client, sid, last)

    doc = client.get(f"/api/sandboxes/{sid}/commands/{first}").json
    assert doc["status"] == "exited" and doc["exit_code"] == 0
    r = client.get(f"/api/sandboxes/{sid}/commands/{first}/logs", headers={"Accept": "application/x-ndjson"})
    assert r.status == 410 and r.json["error"]["code"] == "logs_gone", r
    assert event_bytes(logs(client, sid, last)) == b"last\n"
