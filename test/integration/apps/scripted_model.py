"""A scripted model server for the coding-agent tasks' tests, run inside the
sandbox on its loopback: OpenAI chat completions and Responses, and
Anthropic messages, all streaming, answering from a script (stdlib only).

It is stateless. The script is a list of steps; a request is answered with
step N, N the number of tool results the conversation holds so far. A step:
  {"write": {"path": "hello.txt", "content": "hi\\n"}}   a tool call that writes a file
  {"bash": "echo hi > x"}                                a tool call that runs a shell command
  {"text": "Done."}                                      a final message
and any step may add "sleep": seconds (wait before answering: a model that
hangs) or "status": an HTTP error status. A request without tools (OpenCode's
title request) gets the text "Task". Past the script's end: its last text.

  scripted_model.py [--port 8765] [--script FILE | --script-json JSON] [--log FILE]
"""
import argparse
import json
import re
import shlex
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_SCRIPT = [
    {"write": {"path": "hello.txt", "content": "hi\n"}},
    {"text": "Done: created hello.txt."},
]
# tool names each CLI offers, in the order a step picks them
WRITE_TOOLS = ("write", "Write", "apply_patch", "exec_command", "shell", "Bash", "bash")
SHELL_TOOLS = ("bash", "Bash", "exec_command", "shell")
CWD_PATTERNS = (r"<cwd>([^<]+)</cwd>", r"Primary working directory: (\S+)", r"Working directory: (\S+)")

SCRIPT = DEFAULT_SCRIPT
LOG = None
LOG_LOCK = threading.Lock()


def log(entry):
    if not LOG:
        return
    with LOG_LOCK, open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


def strings(doc):
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for v in doc.values():
            yield from strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from strings(v)


def cwd_of(body):
    """The working folder the CLI put in its prompt."""
    for pat in CWD_PATTERNS:
        for text in strings(body):
            m = re.search(pat, text)
            if m:
                return m.group(1).rstrip(".")
    return "."


def tool_names(api, body):
    names = []
    for t in body.get("tools") or []:
        if api == "chat":
            names.append((t.get("function") or {}).get("name"))
        else:
            names.append(t.get("name"))
    return [n for n in names if n]


def tool_results(api, body):
    n = 0
    if api == "chat":
        n = sum(1 for m in body.get("messages") or [] if m.get("role") == "tool")
    elif api == "messages":
        for m in body.get("messages") or []:
            if m.get("role") == "user" and isinstance(m.get("content"), list):
                n += sum(1 for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result")
    else:
        for it in body.get("input") or []:
            if isinstance(it, dict) and it.get("type") in ("function_call_output", "custom_tool_call_output"):
                n += 1
    return n


def pick(names, wanted):
    for w in wanted:
        if w in names:
            return w
    return None


def tool_call(step, names, cwd):
    """(tool name, arguments dict or raw string for a freeform tool) for a step, or None."""
    if "write" in step:
        path, content = step["write"]["path"], step["write"]["content"]
        absolute = path if path.startswith("/") else f"{cwd.rstrip('/')}/{path}"
        name = pick(names, WRITE_TOOLS)
        if name == "write":
            return name, {"filePath": absolute, "content": content}
        if name == "Write":
            return name, {"file_path": absolute, "content": content}
        if name == "apply_patch":
            lines = "".join(f"+{line}\n" for line in content.rstrip("\n").split("\n"))
            return name, f"*** Begin Patch\n*** Add File: {path}\n{lines}*** End Patch\n"
        cmd = f"printf %s {shlex.quote(content)} > {shlex.quote(absolute)}"
        return shell_args(name, cmd) if name else None
    if "bash" in step:
        name = pick(names, SHELL_TOOLS)
        return shell_args(name, step["bash"]) if name else None
    return None


def shell_args(name, cmd):
    if name == "exec_command":
        return name, {"cmd": cmd}
    if name == "shell":
        return name, {"command": ["bash", "-lc", cmd]}
    if name == "Bash":
        return name, {"command": cmd, "description": "run a command"}
    return name, {"command": cmd, "description": "run a command"}


def chunks(s, n=3):
    """s split in n pieces (arguments arrive split across chunks)."""
    size = max(1, len(s) // n + 1)
    return [s[i:i + size] for i in range(0, len(s), size)] or [""]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: requests go to --log
        pass

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def send_json(self, status, doc):
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self):
        self.send_response(200 if self.path.split("?")[0].endswith("/api/hello") else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        path = self.path.split("?")[0]
        log({"method": "GET", "path": self.path})
        if self.headers.get("Upgrade"):
            self.send_json(404, {"error": "no websockets here"})
        elif path.endswith("/models"):
            self.send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        elif path.endswith("/api/hello"):
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        path = self.path.split("?")[0]
        body = self.read_body()
        api = ("chat" if path.endswith("/chat/completions") else "responses" if path.endswith("/responses")
               else "count" if path.endswith("/messages/count_tokens")
               else "messages" if path.endswith("/messages") else None)
        key = self.headers.get("x-api-key") or (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        # the key's last 4 characters: enough to tell which key came, not the key
        log({"method": "POST", "path": self.path, "api": api, "auth": bool(key), "key_tail": key[-4:],
             "body": body})
        if api is None:
            self.send_json(404, {"error": "not found"})
            return
        if api == "count":
            self.send_json(200, {"input_tokens": len(json.dumps(body)) // 4})
            return
        names = tool_names(api, body)
        n = tool_results(api, body)
        step = SCRIPT[n] if n < len(SCRIPT) else {"text": last_text()}
        if not names:
            step = {"text": "Task"}
        if step.get("sleep"):
            time.sleep(float(step["sleep"]))
        if step.get("status"):
            self.send_json(int(step["status"]), {"error": {"type": "scripted", "message": "scripted failure"}})
            return
        call = tool_call(step, names, cwd_of(body))
        text = step.get("text", "") if call is None else ""
        model = body.get("model") or "fake-model"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            getattr(self, "stream_" + api)(model, call, text)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def sse(self, data, event=None):
        out = (f"event: {event}\n" if event else "") + "data: " + (
            data if isinstance(data, str) else json.dumps(data)) + "\n\n"
        self.wfile.write(out.encode())
        self.wfile.flush()

    # ---- OpenAI chat completions ----
    def stream_chat(self, model, call, text):
        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def chunk(delta, finish=None):
            self.sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        chunk({"role": "assistant", "content": ""})
        if call:
            name, args = call
            args = args if isinstance(args, str) else json.dumps(args)
            call_id = "call_" + uuid.uuid4().hex[:8]
            chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                   "function": {"name": name, "arguments": ""}}]})
            for piece in chunks(args):
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            chunk({}, "tool_calls")
        else:
            for piece in chunks(text, 2):
                chunk({"content": piece})
            chunk({}, "stop")
        self.sse({**base, "choices": [], "usage": {"prompt_tokens": 120, "completion_tokens": 30,
                                                    "total_tokens": 150}})
        self.sse("[DONE]")

    # ---- Anthropic messages ----
    def stream_messages(self, model, call, text):
        mid = "msg_" + uuid.uuid4().hex[:12]
        self.sse({"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 120, "output_tokens": 1, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}}, "message_start")
        if call:
            name, args = call
            self.sse({"type": "content_block_start", "index": 0, "content_block": {
                "type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:12], "name": name, "input": {}}},
                "content_block_start")
            for piece in chunks(json.dumps(args)):
                self.sse({"type": "content_block_delta", "index": 0,
                          "delta": {"type": "input_json_delta", "partial_json": piece}}, "content_block_delta")
            stop = "tool_use"
        else:
            self.sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                     "content_block_start")
            for piece in chunks(text, 2):
                self.sse({"type": "content_block_delta", "index": 0,
                          "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
            stop = "end_turn"
        self.sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        self.sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                  "usage": {"output_tokens": 30}}, "message_delta")
        self.sse({"type": "message_stop"}, "message_stop")

    # ---- OpenAI Responses ----
    def stream_responses(self, model, call, text):
        rid = "resp_" + uuid.uuid4().hex[:12]
        resp = {"id": rid, "object": "response", "created_at": int(time.time()), "model": model,
                "status": "in_progress", "output": []}
        self.sse({"type": "response.created", "response": resp}, "response.created")
        if call:
            name, args = call
            iid, call_id = "fc_" + uuid.uuid4().hex[:8], "call_" + uuid.uuid4().hex[:8]
            if isinstance(args, str):
                item = {"type": "custom_tool_call", "id": iid, "call_id": call_id, "name": name, "input": args,
                        "status": "completed"}
            else:
                item = {"type": "function_call", "id": iid, "call_id": call_id, "name": name,
                        "arguments": json.dumps(args), "status": "completed"}
            added = {**item, "status": "in_progress"}
            added.pop("input", None)
            added.pop("arguments", None)
        else:
            iid = "msg_" + uuid.uuid4().hex[:8]
            item = {"type": "message", "id": iid, "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
            added = {"type": "message", "id": iid, "role": "assistant", "status": "in_progress", "content": []}
        self.sse({"type": "response.output_item.added", "output_index": 0, "item": added},
                 "response.output_item.added")
        if not call:
            for piece in chunks(text, 2):
                self.sse({"type": "response.output_text.delta", "item_id": iid, "output_index": 0,
                          "content_index": 0, "delta": piece}, "response.output_text.delta")
        self.sse({"type": "response.output_item.done", "output_index": 0, "item": item},
                 "response.output_item.done")
        usage = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 30,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 150}
        self.sse({"type": "response.completed", "response": {**resp, "status": "completed", "output": [item],
                                                             "usage": usage}}, "response.completed")


def last_text():
    for step in reversed(SCRIPT):
        if "text" in step:
            return step["text"]
    return "Done."


def main():
    global SCRIPT, LOG
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--script")
    p.add_argument("--script-json")
    p.add_argument("--log")
    a = p.parse_args()
    if a.script:
        with open(a.script) as f:
            SCRIPT = json.load(f)
    elif a.script_json:
        SCRIPT = json.loads(a.script_json)
    LOG = a.log
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print(f"scripted model on 127.0.0.1:{a.port}, {len(SCRIPT)} step(s)", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
