"""Shared helpers of the exec and command tests: a sandbox fixture, event
stream parsing (SSE and NDJSON), and decoding output fields."""
import base64
import json


def make_sandbox(client, template="base", env_vars=None):
    body = {"template": template}
    if env_vars:
        body["env_vars"] = env_vars
    r = client.post("/api/sandboxes", json=body, timeout=300)
    assert r.status == 201, r
    assert r.json["status"] == "running", r.json
    return r.json


def execute(client, sid, command, **kw):
    body = {"command": command}
    body.update(kw)
    return client.post(f"/api/sandboxes/{sid}/execute", json=body, timeout=120)


def field(doc, key):
    """An output field as bytes, whichever encoding the answer chose."""
    if doc.get("encoding") == "base64":
        return base64.b64decode(doc[key])
    return doc[key].encode()


def parse_sse(body):
    events = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        ev = {}
        for line in block.split("\n"):
            k, _, v = line.partition(": ")
            ev[k] = v
        events.append({"id": ev.get("id"), "type": ev["event"], **json.loads(ev["data"])})
    return events


def parse_ndjson(body):
    return [json.loads(l) for l in body.decode().splitlines() if l.strip()]


def event_bytes(events, types=("stdout", "stderr")):
    out = b""
    for e in events:
        if e["type"] in types:
            out += base64.b64decode(e["data"]) if e.get("encoding") == "base64" else e["data"].encode()
    return out
