"""The scripted model the task tests run in their sandboxes
(apps/scripted_model.py), checked on the host: each provider API streams the
script's tool call, then its final text once the conversation holds a tool
result, the way the CLIs' probes saw the real protocols."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "scripted_model.py")


@pytest.fixture
def model():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, APP, "--port", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the scripted model did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        p.kill()
        p.wait()


def post_sse(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        text = r.read().decode()
    events = []
    for block in text.split("\n\n"):
        ev, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if data is not None:
            events.append((ev, data if data == "[DONE]" else json.loads(data)))
    return events


def test_chat_completions_tool_call_then_text(model):
    tools = [{"type": "function", "function": {"name": "write"}}]
    sys_msg = {"role": "system", "content": "Working directory: /w"}
    evs = post_sse(model + "/v1/chat/completions", {"messages": [sys_msg], "tools": tools, "stream": True})
    args = "".join(tc["function"].get("arguments", "") for _, d in evs if d != "[DONE]" and d["choices"]
                   for tc in d["choices"][0]["delta"].get("tool_calls", []))
    assert json.loads(args) == {"filePath": "/w/hello.txt", "content": "hi\n"}
    assert evs[-1] == (None, "[DONE]") and evs[-2][1]["usage"]["total_tokens"] == 150
    evs = post_sse(model + "/v1/chat/completions",
                   {"messages": [sys_msg, {"role": "tool", "content": "ok"}], "tools": tools})
    text = "".join(d["choices"][0]["delta"].get("content") or "" for _, d in evs if d != "[DONE]" and d["choices"])
    assert text == "Done: created hello.txt."


def test_anthropic_messages_tool_use_then_text(model):
    body = {"tools": [{"name": "Write"}], "messages": [
        {"role": "user", "content": "create hello.txt"},
        {"role": "system", "content": "Primary working directory: /w"}]}
    evs = post_sse(model + "/v1/messages?beta=true", body)
    assert [e for e, _ in evs][0] == "message_start" and evs[-1][0] == "message_stop"
    start = [d for e, d in evs if e == "content_block_start"][0]
    assert start["content_block"]["name"] == "Write"
    partial = "".join(d["delta"]["partial_json"] for e, d in evs if e == "content_block_delta")
    assert json.loads(partial) == {"file_path": "/w/hello.txt", "content": "hi\n"}
    body["messages"].append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]})
    evs = post_sse(model + "/v1/messages", body)
    assert "".join(d["delta"]["text"] for e, d in evs if e == "content_block_delta") == "Done: created hello.txt."


def test_responses_function_call_then_message(model):
    body = {"tools": [{"type": "function", "name": "exec_command"}],
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "<cwd>/w</cwd>"}]}]}
    evs = post_sse(model + "/v1/responses", body)
    done = [d for e, d in evs if e == "response.output_item.done"][0]["item"]
    assert done["type"] == "function_call" and done["name"] == "exec_command"
    assert json.loads(done["arguments"]) == {"cmd": "printf %s 'hi\n' > /w/hello.txt"}
    assert evs[-1][0] == "response.completed"
    body["input"].append({"type": "function_call_output", "call_id": "c", "output": "ok"})
    evs = post_sse(model + "/v1/responses", body)
    done = [d for e, d in evs if e == "response.output_item.done"][0]["item"]
    assert done["content"][0]["text"] == "Done: created hello.txt."


def test_no_tools_gets_a_title_and_side_endpoints_answer(model):
    evs = post_sse(model + "/v1/chat/completions", {"messages": [{"role": "user", "content": "title?"}]})
    assert "".join(d["choices"][0]["delta"].get("content") or "" for _, d in evs
                   if d != "[DONE]" and d["choices"]) == "Task"
    with urllib.request.urlopen(model + "/v1/models", timeout=5) as r:
        assert json.load(r)["data"][0]["id"] == "fake-model"
    req = urllib.request.Request(model + "/v1/messages/count_tokens", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert "input_tokens" in json.load(r)
