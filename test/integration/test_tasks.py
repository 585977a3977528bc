"""Coding-agent tasks: a prompt run by a real CLI (OpenCode, Claude Code,
Codex) in an `agents` sandbox against the scripted model on the sandbox's
loopback, or by a custom command speaking our event lines; the events as SSE
and NDJSON (resumable), the result, the diff and the revert, cancel and
timeout, bad input, and tasks that outlive their sandbox and sandbard."""
import http.client
import json
import os
import time

import pytest

from commands_util import execute, make_sandbox, parse_ndjson
from harness import pg
from harness.wait import until

MODEL_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "scripted_model.py")
MODEL_PORT = 8765
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}

# a custom agent: our own event lines, a file written, a final result
CUSTOM_AGENT = r"""
echo '{"type":"message","text":"writing hello.txt"}'
printf 'hi\n' > hello.txt
echo '{"type":"tool","name":"write","input":{"path":"hello.txt"},"output":"ok","duration_ms":1}'
echo "plain output: $SANDBAR_TASK_PROMPT"
echo '{"type":"usage","input_tokens":3,"output_tokens":4}'
echo '{"type":"result","status":"succeeded","message":"wrote hello.txt"}'
"""


def task_url(sid, tid="", tail=""):
    return f"/api/sandboxes/{sid}/tasks" + (f"/{tid}" if tid else "") + tail


def start_task(c, sid, **body):
    r = c.post(task_url(sid), json=body, timeout=120)
    assert r.status == 201, r
    assert r.json["status"] == "running" and r.json["events_url"].endswith("/events"), r.json
    return r.json


def wait_done(c, sid, tid, timeout=120):
    return until(lambda: (lambda d: d if d["status"] in TERMINAL else None)(c.get(task_url(sid, tid)).json),
                 timeout=timeout, what=f"task {tid} to end")


def sse_events(srv, path, headers=None, limit=None, timeout=120):
    """The events of an SSE answer (all, or the first `limit`: then the
    connection is dropped), parsed: [{"id", "event", "data"}]."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    conn.request("GET", path, headers={"Accept": "text/event-stream", **(headers or {})})
    r = conn.getresponse()
    assert r.status == 200, (r.status, r.read())
    assert r.getheader("Content-Type").startswith("text/event-stream")
    events, cur = [], {}
    try:
        while limit is None or len(events) < limit:
            line = r.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line == "":
                if cur:
                    events.append({"id": int(cur["id"]), "event": cur["event"], "data": json.loads(cur["data"])})
                cur = {}
                continue
            if line.startswith(":"):  # a keep-alive comment
                continue
            k, _, v = line.partition(": ")
            cur[k] = v
    finally:
        conn.close()
    return events


def check_sequence(events):
    ids = [e["id"] for e in events]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids
    phases = [e["data"]["phase"] for e in events if e["event"] == "status"]
    assert phases[:1] == ["preparing"] or ids[0] > 1, phases
    assert events[-1]["event"] == "done", events[-1]


def put_file(c, sid, path, data):
    r = execute(c, sid, f"cat > {path}", stdin=data)
    assert r.status == 200 and r.json["exit_code"] == 0, r


def start_model(c, sid, script=None):
    """The scripted model on the sandbox's loopback, as a detached command."""
    with open(MODEL_APP) as f:
        put_file(c, sid, "/tmp/scripted_model.py", f.read())
    if script is not None:
        put_file(c, sid, "/tmp/script.json", json.dumps(script))
    args = " --script /tmp/script.json" if script is not None else ""
    r = c.post(f"/api/sandboxes/{sid}/commands",
               json={"command": f"python3 /tmp/scripted_model.py --port {MODEL_PORT} --log /tmp/model.log{args}"})
    assert r.status == 201, r
    until(lambda: execute(c, sid, f"curl -sf http://127.0.0.1:{MODEL_PORT}/v1/models").json["exit_code"] == 0,
          timeout=20, what="the scripted model listening")


MODEL_ENV = {
    "OPENAI_BASE_URL": f"http://127.0.0.1:{MODEL_PORT}/v1",
    "OPENAI_API_KEY": "sk-test-openai-0123456789-oa",
    "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{MODEL_PORT}",
    "ANTHROPIC_API_KEY": "sk-test-anthropic-0123456789-an",
}


@pytest.fixture(scope="module")
def agents_ready():
    """The agents template's image needs sandbar/agent-clis (tools/test makes it)."""
    from harness import docker
    if docker.inspect("sandbar/agent-clis:latest", kind="image") is None:
        pytest.fail("sandbar/agent-clis:latest is missing: run tools/image/build-agent-clis", pytrace=False)


# ---------------------------------------------------------------- custom


def test_task_custom_events_result_diff_revert(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    t = start_task(c, sid, agent="custom", prompt="say hi", command=CUSTOM_AGENT)
    events = sse_events(server, task_url(sid, t["id"], "/events"))
    check_sequence(events)
    types = [e["event"] for e in events]
    assert [e["data"]["phase"] for e in events if e["event"] == "status"] == [
        "preparing", "running", "checkpointing", "done"], events
    assert "message" in types and "tool" in types and "build" in types
    tool = next(e["data"] for e in events if e["event"] == "tool")
    assert tool["name"] == "write" and tool["input"] == "hello.txt" and tool["duration_ms"] == 1
    build = next(e["data"] for e in events if e["event"] == "build")
    assert build["output"] == "plain output: say hi"
    done = events[-1]["data"]
    assert done["status"] == "succeeded" and done["reason"] is None, done
    assert done["files_changed"] == [{"path": "hello.txt", "added": 1, "deleted": 0}], done
    assert done["message"] == "wrote hello.txt" and done["tokens"] == {"input": 3, "output": 4}
    assert done["duration_ms"] >= 0 and done["before"] and done["after"]

    doc = c.get(task_url(sid, t["id"])).json
    assert doc["status"] == "succeeded" and doc["phase"] == "done" and doc["result"] == done, doc
    assert doc["events"] == len(events) and doc["ended_at"]
    assert [x["id"] for x in c.get(task_url(sid)).json] == [t["id"]]

    # NDJSON, and ?since
    r = c.get(task_url(sid, t["id"], "/events?since=2"), headers={"Accept": "application/x-ndjson"})
    assert r.status == 200 and r.header("Content-Type").startswith("application/x-ndjson")
    lines = parse_ndjson(r.body)
    assert [x["id"] for x in lines] == [e["id"] for e in events[2:]]
    assert lines[-1]["type"] == "done" and lines[-1]["data"] == done

    # the diff between the checkpoints, then back to the one before
    r = c.get(task_url(sid, t["id"], "/diff"))
    assert r.status == 200 and r.header("Content-Type").startswith("text/x-diff"), r
    assert b"+++ b/hello.txt" in r.body and b"\n+hi\n" in r.body, r.body
    assert execute(c, sid, "cat hello.txt").json["stdout"] == "hi\n"
    r = c.post(task_url(sid, t["id"], "/revert"))
    assert r.status == 200 and len(r.json["commit"]) == 40, r
    assert execute(c, sid, "test -e hello.txt").json["exit_code"] == 1
    log = execute(c, sid, "git log --format='%an <%ae> %s'").json["stdout"]
    assert f"sandbox <{sid}@sandbar> sandbar: revert task {t['id']}" in log, log
    assert f"sandbar: before task {t['id']}" in log and f"sandbar: after task {t['id']}" in log


def test_task_revert_in_a_folder_another_user_owns(server, client):
    """git refuses a repository another user owns unless told otherwise
    (TASK_GIT): every git step of the revert too, its last rev-parse included."""
    c = client
    sid = make_sandbox(c)["id"]
    r = execute(c, sid, "mkdir -m 777 /tmp/theirs && chown 65534:65534 /tmp/theirs", user="root")
    assert r.json["exit_code"] == 0, r
    t = start_task(c, sid, agent="custom", prompt="p", cwd="/tmp/theirs", command="printf 'x\\n' > x.txt")
    assert wait_done(c, sid, t["id"])["status"] == "succeeded"
    r = c.post(task_url(sid, t["id"], "/revert"))
    assert r.status == 200 and len(r.json["commit"]) == 40, r
    assert execute(c, sid, "test -e /tmp/theirs/x.txt").json["exit_code"] == 1


def test_task_bad_input_and_conflict(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    for body, code in (
            ({"agent": "gpt", "prompt": "x"}, "invalid_agent"),
            ({"prompt": "x"}, "invalid_agent"),
            ({"agent": "claude", "prompt": ""}, "invalid_prompt"),
            ({"agent": "claude"}, "invalid_prompt"),
            ({"agent": "claude", "prompt": "x", "env": {"1BAD": "v"}}, "invalid_env"),
            ({"agent": "claude", "prompt": "x", "env": {"K": 5}}, "invalid_env"),
            ({"agent": "claude", "prompt": "x", "env": []}, "invalid_env"),
            ({"agent": "claude", "prompt": "x", "timeout_seconds": -1}, "invalid_timeout"),
            ({"agent": "claude", "prompt": "x", "timeout_seconds": 0}, "invalid_timeout"),
            ({"agent": "claude", "prompt": "x", "cwd": "relative"}, "invalid_cwd"),
            ({"agent": "claude", "prompt": "x", "command": "ls"}, "invalid_command"),
            ({"agent": "custom", "prompt": "x"}, "invalid_command"),
            ({"agent": "custom", "prompt": "x", "command": [1]}, "invalid_command")):
        r = c.post(task_url(sid), json=body)
        assert r.status == 400 and r.json["error"]["code"] == code, (body, r)
    r = c.post(task_url(sid), body=b"[1]", headers={"Content-Type": "application/json"})
    assert r.status == 400, r
    r = c.post(task_url("00000000-0000-4000-8000-000000000000"), json={"agent": "custom", "prompt": "x",
                                                                       "command": "true"})
    assert r.status == 404, r
    assert c.get(task_url(sid, "00000000-0000-4000-8000-000000000000")).status == 404
    assert c.get(task_url(sid, "nope")).status == 404
    assert c.get(task_url(sid, "nope", "/events")).status == 404
    r = c.get(task_url(sid, "00000000-0000-4000-8000-000000000000", "/events"), headers={"Last-Event-ID": "x"})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_since"

    # one task at a time: 409 with the running task's id
    t = start_task(c, sid, agent="custom", prompt="wait", command="sleep 30")
    r = c.post(task_url(sid), json={"agent": "custom", "prompt": "x", "command": "true"})
    assert r.status == 409 and r.json["error"]["code"] == "task_running", r
    assert r.json["error"]["task_id"] == t["id"]
    assert c.get(task_url(sid, t["id"], "/diff")).status == 409
    r = c.post(task_url(sid, t["id"], "/cancel"))
    assert r.status == 202 and r.json["id"] == t["id"], r
    assert wait_done(c, sid, t["id"])["status"] == "cancelled"
    r = c.post(task_url(sid, t["id"], "/cancel"))
    assert r.status == 409 and r.json["error"]["code"] == "task_not_running", r


def test_task_cancel_leaves_no_process(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    # a child that ignores nothing and a grandchild in the background: the group goes
    t = start_task(c, sid, agent="custom", prompt="hang",
                   command="echo '{\"type\":\"message\",\"text\":\"started\"}'; sleep 301 & sleep 302; wait")
    until(lambda: "sleep 302" in execute(c, sid, "ps -eo args").json["stdout"], timeout=30,
          what="the custom agent running")
    r = c.post(task_url(sid, t["id"], "/cancel"))
    assert r.status == 202, r
    doc = wait_done(c, sid, t["id"], timeout=30)
    assert doc["status"] == "cancelled" and doc["reason"] == "cancelled", doc
    ps = execute(c, sid, "ps -eo args").json["stdout"]
    assert "sleep 301" not in ps and "sleep 302" not in ps, ps
    assert doc["result"]["status"] == "cancelled"


def test_task_timeout_and_a_cli_that_fails_at_once(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    t = start_task(c, sid, agent="custom", prompt="hang", command="sleep 300", timeout_seconds=2)
    doc = wait_done(c, sid, t["id"], timeout=60)
    assert doc["status"] == "timed_out" and "timeout of 2 s" in doc["reason"], doc
    assert "sleep 300" not in execute(c, sid, "ps -eo args").json["stdout"]
    # the base template has no CLI: it exits at once (127), the task fails with the reason
    t = start_task(c, sid, agent="codex", prompt="x", env={"OPENAI_API_KEY": "sk-never-shown-0123"})
    doc = wait_done(c, sid, t["id"], timeout=60)
    assert doc["status"] == "failed" and "codex exited with code 127" in doc["reason"], doc
    assert doc["result"]["exit_code"] == 127


def test_task_events_resume_with_last_event_id(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    agent = "for i in 1 2 3 4 5 6; do echo \"{\\\"type\\\":\\\"message\\\",\\\"text\\\":\\\"m$i\\\"}\"; sleep 0.5; done"
    t = start_task(c, sid, agent="custom", prompt="count", command=agent)
    first = sse_events(server, task_url(sid, t["id"], "/events"), limit=4)
    assert [e["id"] for e in first] == [1, 2, 3, 4]
    # the client went away mid-task: it loses nothing
    rest = sse_events(server, task_url(sid, t["id"], "/events"), headers={"Last-Event-ID": str(first[-1]["id"])})
    events = first + rest
    check_sequence(events)
    texts = [e["data"]["text"] for e in events if e["event"] == "message"]
    assert texts == [f"m{i}" for i in range(1, 7)], texts
    assert events[-1]["data"]["status"] == "succeeded"


def test_task_readable_after_sandbox_delete(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    t = start_task(c, sid, agent="custom", prompt="say hi", command=CUSTOM_AGENT)
    done = wait_done(c, sid, t["id"])
    assert c.delete(f"/api/sandboxes/{sid}").status == 204
    doc = c.get(task_url(sid, t["id"]))
    assert doc.status == 200 and doc.json["result"] == done["result"], doc
    assert [x["id"] for x in c.get(task_url(sid)).json] == [t["id"]]
    events = sse_events(server, task_url(sid, t["id"], "/events"))
    check_sequence(events)
    assert events[-1]["data"]["status"] == "succeeded"
    # a new task in a deleted sandbox: the sandbox is no more
    r = c.post(task_url(sid), json={"agent": "custom", "prompt": "x", "command": "true"})
    assert r.status in (404, 409), r


def test_task_survives_sandbard_restart(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    agent = ("echo '{\"type\":\"message\",\"text\":\"before\"}'; sleep 6; "
             "echo '{\"type\":\"message\",\"text\":\"after\"}'; echo done > restarted.txt")
    t = start_task(c, sid, agent="custom", prompt="outlive", command=agent)
    first = sse_events(server, task_url(sid, t["id"], "/events"), limit=3)
    assert first[-1]["event"] == "message" and first[-1]["data"]["text"] == "before", first
    server.restart()
    c2 = server.client()
    rest = sse_events(server, task_url(sid, t["id"], "/events"), headers={"Last-Event-ID": "3"})
    events = first + rest
    check_sequence(events)
    assert [e["data"]["text"] for e in events if e["event"] == "message"] == ["before", "after"], events
    done = events[-1]["data"]
    assert done["status"] == "succeeded", done
    assert done["files_changed"] == [{"path": "restarted.txt", "added": 1, "deleted": 0}], done
    c2.close()


def test_task_long_history_replays_from_postgres_then_live(server, client):
    """A running task keeps only its latest events in memory: a watcher that
    comes late reads the older ones from PostgreSQL, then follows it live."""
    c = client
    sid = make_sandbox(c)["id"]
    agent = ("for i in $(seq 1 600); do echo '{\"type\":\"message\",\"text\":\"line '$i'\"}'; done; "
             "sleep 4; echo '{\"type\":\"message\",\"text\":\"last\"}'")
    t = start_task(c, sid, agent="custom", prompt="many", command=agent)
    until(lambda: c.get(task_url(sid, t["id"])).json["events"] > 600, timeout=60, what="600 events")
    assert c.get(task_url(sid, t["id"])).json["status"] == "running"
    events = sse_events(server, task_url(sid, t["id"], "/events"))
    check_sequence(events)
    assert events[0]["id"] == 1
    texts = [e["data"]["text"] for e in events if e["event"] == "message"]
    assert texts == [f"line {i}" for i in range(1, 601)] + ["last"], texts[:3] + texts[-3:]
    r = c.get(task_url(sid, t["id"], "/events?since=5"), headers={"Accept": "application/x-ndjson"})
    assert [x["id"] for x in parse_ndjson(r.body)] == [e["id"] for e in events[5:]]


# ---------------------------------------------------------------- the real CLIs


@pytest.mark.parametrize("agent", ["claude", "codex", "opencode"])
def test_task_real_cli_offline(agents_ready, server, client, agent):
    c = client
    sb = make_sandbox(c, template="agents")
    sid = sb["id"]
    start_model(c, sid)
    t = start_task(c, sid, agent=agent, prompt="create hello.txt containing hi", model="fake-model",
                   env=MODEL_ENV, timeout_seconds=180)
    events = sse_events(server, task_url(sid, t["id"], "/events"), timeout=240)
    check_sequence(events)
    done = events[-1]["data"]
    assert done["status"] == "succeeded", (done, events)
    types = [e["event"] for e in events]
    assert "tool" in types and "message" in types, events
    assert done["message"].startswith("Done: created hello.txt"), done
    assert done["files_changed"] == [{"path": "hello.txt", "added": 1, "deleted": 0}], done
    assert done["tokens"] and done["tokens"]["input"] > 0, done
    assert execute(c, sid, "cat hello.txt").json["stdout"] == "hi\n"
    diff = c.get(task_url(sid, t["id"], "/diff")).body
    assert b"\n+hi\n" in diff, diff
    # the provider key reached the model and appears nowhere in the task
    everything = json.dumps(events) + json.dumps(c.get(task_url(sid, t["id"])).json)
    for key in (MODEL_ENV["OPENAI_API_KEY"], MODEL_ENV["ANTHROPIC_API_KEY"]):
        assert key not in everything
    # every request to the model carried the task's key (OpenCode's through {env:OPENAI_API_KEY})
    tail = (MODEL_ENV["ANTHROPIC_API_KEY"] if agent == "claude" else MODEL_ENV["OPENAI_API_KEY"])[-4:]
    tails = execute(c, sid, "grep -o '\"key_tail\": \"[^\"]*\"' /tmp/model.log | sort | uniq -c").json["stdout"]
    assert tails.split() and all(line.endswith(f'"{tail}"') for line in tails.splitlines()), tails
    with open(server.log_path) as f:
        logged = f.read()
    for key in (MODEL_ENV["OPENAI_API_KEY"], MODEL_ENV["ANTHROPIC_API_KEY"]):
        assert key not in logged
    stored = pg.psql("SELECT (SELECT coalesce(string_agg(t::text, ' '), '') FROM tasks t) || "
                     "(SELECT coalesce(string_agg(e::text, ' '), '') FROM task_events e) || "
                     "(SELECT coalesce(string_agg(c::text, ' '), '') FROM commands c)", url=server.database_url)
    assert "fake-model" in stored and "hello.txt" in stored
    for key in (MODEL_ENV["OPENAI_API_KEY"], MODEL_ENV["ANTHROPIC_API_KEY"]):
        assert key not in stored


def test_task_wakes_a_stopped_sandbox_or_409(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"auto_wake": True})
    assert r.status == 200 and r.json["auto_wake"] is True, r
    assert c.post(f"/api/sandboxes/{sid}/stop", timeout=60).json["status"] == "stopped"
    t = start_task(c, sid, agent="custom", prompt="x", command=CUSTOM_AGENT)
    assert c.get(f"/api/sandboxes/{sid}").json["status"] == "running"
    assert wait_done(c, sid, t["id"])["status"] == "succeeded"
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"auto_wake": False})
    assert r.status == 200, r
    assert c.post(f"/api/sandboxes/{sid}/stop", timeout=60).json["status"] == "stopped"
    r = c.post(task_url(sid), json={"agent": "custom", "prompt": "x", "command": "true"})
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_running", r


def test_task_cli_printing_no_json_fails_with_the_reason(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    r = execute(c, sid, "cat > /usr/local/bin/claude && chmod 755 /usr/local/bin/claude", user="root",
                stdin="#!/bin/sh\necho 'hello, not json'\necho 'oops' >&2\n")
    assert r.status == 200 and r.json["exit_code"] == 0, r
    t = start_task(c, sid, agent="claude", prompt="x")
    doc = wait_done(c, sid, t["id"])
    assert doc["status"] == "failed", doc
    assert doc["reason"] == "claude printed no JSON events (1 other lines): oops", doc


def test_task_of_a_sandbox_deleted_under_it_fails_with_the_reason(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    t = start_task(c, sid, agent="custom", prompt="hang", command="echo '{\"type\":\"message\",\"text\":\"hi\"}'; sleep 300")
    until(lambda: c.get(task_url(sid, t["id"])).json["phase"] == "running", timeout=30, what="the task running")
    assert c.delete(f"/api/sandboxes/{sid}").status == 204
    doc = wait_done(c, sid, t["id"], timeout=60)
    assert doc["status"] == "failed" and doc["reason"].startswith("the sandbox stopped or went away"), doc
    events = sse_events(server, task_url(sid, t["id"], "/events"))
    check_sequence(events)
    assert events[-1]["data"]["status"] == "failed"


def test_task_whose_sandbox_died_while_sandbard_was_down_fails(server, client, docker_cli):
    c = client
    sb = make_sandbox(c)
    sid = sb["id"]
    t = start_task(c, sid, agent="custom", prompt="hang", command="sleep 300")
    until(lambda: c.get(task_url(sid, t["id"])).json["phase"] == "running", timeout=30, what="the task running")
    server.stop()
    docker_cli.remove_containers([sb["container_id"]])
    server.start()
    c2 = server.client()
    doc = wait_done(c2, sid, t["id"], timeout=60)
    assert doc["status"] == "failed" and doc["reason"].startswith("the sandbox stopped or went away"), doc
    events = sse_events(server, task_url(sid, t["id"], "/events"))
    check_sequence(events)
    c2.close()


def test_task_quiet_sse_stream_gets_keep_alive_comments(server, client):
    c = client
    sid = make_sandbox(c)["id"]
    t = start_task(c, sid, agent="custom", prompt="think", command="sleep 17")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    conn.request("GET", task_url(sid, t["id"], "/events"), headers={"Accept": "text/event-stream"})
    r = conn.getresponse()
    lines = []
    while True:
        line = r.readline()
        if not line:
            break
        lines.append(line.decode().rstrip("\n"))
    conn.close()
    assert ": keep-alive" in lines, lines
    assert "event: done" in lines
