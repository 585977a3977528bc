"""Shared helpers of the Hermes dialect's tests (spec/hermes.md): the
envelope checked on every answer, the Info object's exact keys and JSON
types, and waiting for a Hermes status."""
import re
import time

API = "/api/v1/sandboxes"
INFO_KEYS = {"id", "user_id", "namespace", "status", "ip", "preview_host", "preview_url", "port", "image_tag",
             "spec", "labels", "created_at", "allocated_at", "last_active_at", "expire_at"}
SPEC_KEYS = {"cpu", "memory", "image", "requests_cpu", "requests_memory"}
GO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
STATUSES = {"creating", "active", "stopping", "stopped", "failed"}


def envelope(r):
    """The envelope's four members, with their types; the data."""
    j = r.json
    assert isinstance(j, dict), r
    assert set(j) == {"code", "message", "data", "request_id"}, j
    assert type(j["code"]) is int and isinstance(j["message"], str) and j["message"], j
    assert j["request_id"] == r.header("X-Request-Id") and j["request_id"], (j, r.headers)
    return j


def ok(r):
    j = envelope(r)
    assert j["code"] == 0 and j["message"] == "ok" and r.status == 200, r
    return j["data"]


def refused(r, code=None):
    """An error: code != 0 (the HTTP status, also the envelope's), data null."""
    j = envelope(r)
    assert j["code"] != 0 and j["data"] is None and r.status == j["code"], r
    if code is not None:
        assert j["code"] == code, r
    return j


def check_info(i):
    assert set(i) == INFO_KEYS, set(i) ^ INFO_KEYS
    for k in ("id", "user_id", "namespace", "status", "ip", "preview_host", "preview_url", "image_tag",
              "created_at", "allocated_at", "last_active_at", "expire_at"):
        assert isinstance(i[k], str), (k, i[k])
    assert i["id"] and i["namespace"] and i["preview_host"] and i["preview_url"], i
    assert i["status"] in STATUSES, i
    assert i["port"] is None or type(i["port"]) is int, i
    assert set(i["spec"]) == SPEC_KEYS and all(isinstance(v, str) for v in i["spec"].values()), i
    assert isinstance(i["labels"], dict) and all(isinstance(v, str) for v in i["labels"].values()), i
    for k in ("created_at", "expire_at", "allocated_at"):
        assert GO_TIME.match(i[k]), (k, i[k])
    assert i["last_active_at"] == "" or GO_TIME.match(i["last_active_at"]), i
    return i


def patch(c, path, **kw):
    return c.request("PATCH", path, **kw)


def get_info(c, sid, headers=None):
    return check_info(ok(c.get(f"{API}/{sid}", headers=headers)))


def wait_status(c, sid, want, headers=None, timeout=120.0):
    deadline = time.monotonic() + timeout
    while True:
        i = get_info(c, sid, headers)
        if i["status"] == want:
            return i
        assert i["status"] != "failed", i
        if time.monotonic() > deadline:
            raise AssertionError(f"sandbox {sid} still {i['status']} after {timeout}s")
        time.sleep(0.1)


def go_seconds(t):
    """A Go RFC 3339 UTC time in seconds since the epoch."""
    return time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
