"""The Hermes dialect's REST and admin routes (spec/hermes.md §1-§6) against
the real dockerd and PostgreSQL: every answer in the envelope with the SDK's
JSON types, create and list on one POST by the keys present, statuses
through stop and start, PATCH echoed verbatim and applied as Docker limits,
Kubernetes quantities, allowed and refused images, the env payload seen by
later commands, projects, pagination, the admin pool and a rollout, and an
error (code != 0) for every refusal. Sandboxes are shared within a test."""
import json
import subprocess
import time
import uuid

from commands_util import execute
from harness import docker
from harness.wait import until
from hermes_util import (API, check_info, go_seconds, get_info, ok, patch, refused, wait_status)

IMAGE = "sandbar/base:latest"


def stdout(c, sid, command, **kw):
    r = execute(c, sid, command, **kw)
    assert r.status == 200, r
    return r.json["stdout"]


def test_one_sandbox_through_every_route(server):
    c = server.client()
    body = {"user_id": "alice",
            "spec": {"cpu": "500m", "memory": "512Mi", "requests_cpu": "250m", "requests_memory": "256Mi"},
            "labels": {"team": "a", "app.kubernetes.io/name": "x"},
            "payloads": [{"api": "/api/v1/env", "body": {"HERMES_A": "1", "HERMES_B": "b & <c>"},
                          "envs": {"IGNORED": "x"}}],
            "ttl_hours": 2}
    # the SDK's bytes: Go escapes & < > in strings
    raw = json.dumps(body).replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    r = c.post(API, body=raw, headers={"Content-Type": "application/json"})
    data = ok(r)
    assert set(data) == {"sandbox"}, data
    sb = check_info(data["sandbox"])
    sid = sb["id"]
    assert sb["status"] in ("creating", "active")
    i = wait_status(c, sid, "active")
    assert i["spec"] == {"cpu": "500m", "memory": "512Mi", "image": "", "requests_cpu": "250m",
                         "requests_memory": "256Mi"}, i
    assert i["labels"] == body["labels"] and i["user_id"] == "alice" and i["namespace"] == "default"
    assert i["image_tag"] == IMAGE and i["port"] == 8080 and i["ip"] == ""
    assert i["preview_host"] == f"{sid}.preview.localhost", i
    assert i["preview_url"].startswith(f"http://8080-{sid}.preview.localhost"), i
    assert go_seconds(i["expire_at"]) - go_seconds(i["created_at"]) == 2 * 3600, i
    host = docker.inspect(f"sandbar-{sid}")["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 512 * 1024**2, host

    # the env payload is the sandbox's environment, under each call's own
    assert stdout(c, sid, 'printf %s "$HERMES_A|$HERMES_B|${IGNORED-unset}"') == "1|b & <c>|unset"
    assert stdout(c, sid, 'printf %s "$HERMES_A"', env={"HERMES_A": "call"}) == "call"
    # configure: applied and remembered; no body applies it again
    d = ok(c.post(f"{API}/{sid}/configure", json={"payloads": [{"api": "/api/v1/env", "body": {"HERMES_C": "3"}}]}))
    assert check_info(d)["status"] == "active"
    assert stdout(c, sid, 'printf %s "$HERMES_A$HERMES_C"') == "13"
    ok(c.post(f"{API}/{sid}/configure"))
    assert stdout(c, sid, 'printf %s "$HERMES_A$HERMES_C"') == "13"
    refused(c.post(f"{API}/{sid}/configure", json={"payloads": [{"api": "/api/v1/files", "body": {}}]}), 400)
    refused(c.post(f"{API}/{sid}/configure", json={"payloads": [{"api": "/api/v1/env", "body": {"A": {}}}]}), 400)

    # PATCH: spec merged and echoed verbatim, limits applied at once
    ok(patch(c, f"{API}/{sid}", json={"spec": {"memory": "1Gi", "cpu": "1.5"}}))
    i = get_info(c, sid)
    assert i["spec"]["memory"] == "1Gi" and i["spec"]["cpu"] == "1.5" and i["spec"]["requests_cpu"] == "250m"
    host = docker.inspect(f"sandbar-{sid}")["HostConfig"]
    assert host["Memory"] == 1024**3 and host["NanoCpus"] == 1_500_000_000, host
    refused(patch(c, f"{API}/{sid}", json={}), 400)
    refused(patch(c, f"{API}/{sid}", json={"spec": {}}), 400)
    refused(patch(c, f"{API}/{sid}", json={"spec": {"cpu": "lots"}}), 400)
    refused(patch(c, f"{API}/{sid}", json={"spec": {"memory": "12Qi"}}), 400)
    refused(patch(c, f"{API}/{sid}", json={"image": "debian:nope"}), 400)
    assert get_info(c, sid)["status"] == "active"

    # extend: later, never earlier; 1..86400
    before = go_seconds(get_info(c, sid)["expire_at"])
    ok(c.post(f"{API}/{sid}/extend", json={"seconds": 3600}))
    assert go_seconds(get_info(c, sid)["expire_at"]) >= before + 3600
    for bad in ({"seconds": 0}, {"seconds": 86401}, {"seconds": "10"}, {}):
        refused(c.post(f"{API}/{sid}/extend", json=bad), 400)

    # start on active: refused, still active; stop answers at once, GET follows
    refused(c.post(f"{API}/{sid}/start"), 409)
    assert get_info(c, sid)["status"] == "active"
    t0 = time.monotonic()
    ok(c.post(f"{API}/{sid}/stop"))
    assert time.monotonic() - t0 < 5
    seen = set()
    until(lambda: seen.add(get_info(c, sid)["status"]) or "stopped" in seen, timeout=60, what="stopped")
    assert seen <= {"active", "stopping", "stopped"}, seen
    for verb in ("stop", "restart", "configure"):
        refused(c.post(f"{API}/{sid}/{verb}"), 409)
    refused(patch(c, f"{API}/{sid}", json={"spec": {"cpu": "1"}}), 409)
    ok(c.post(f"{API}/{sid}/extend", json={"seconds": 60}))  # fine, and it stays stopped
    time.sleep(0.5)
    assert get_info(c, sid)["status"] == "stopped"

    # start: creating -> active, everything kept
    ok(c.post(f"{API}/{sid}/start"))
    i = wait_status(c, sid, "active")
    assert i["spec"]["memory"] == "1Gi" and i["image_tag"] == IMAGE and i["labels"] == body["labels"]
    assert stdout(c, sid, 'printf %s "$HERMES_A$HERMES_C"') == "13"
    ok(c.post(f"{API}/{sid}/restart"))
    wait_status(c, sid, "active")

    # delete: gone at once, and a second delete is an error
    assert ok(c.delete(f"{API}/{sid}")) is None
    refused(c.get(f"{API}/{sid}"), 404)
    refused(c.delete(f"{API}/{sid}"), 404)
    items = ok(c.post(API, json={"limit": 1000}))["items"]
    assert sid not in [x["id"] for x in items]


def test_create_list_collision_pages_projects_and_bad_input(server):
    c = server.client()
    # {} is a list; items always an array
    d = ok(c.post(API, json={}))
    assert d == {"items": [], "pagination": {"total": 0, "limit": 100, "offset": 0, "has_more": False}}, d
    d = ok(c.post(API))  # no body at all: a list too
    assert d["items"] == []
    # user_id alone: create and list, the new one in the list
    d = ok(c.post(API, json={"user_id": "carol"}))
    assert set(d) == {"sandbox", "items", "pagination"}, d
    first = check_info(d["sandbox"])
    assert [x["id"] for x in d["items"]] == [first["id"]] and d["pagination"]["total"] == 1
    # create-shaped: sandbox only; list-shaped: items only
    d = ok(c.post(API, json={"user_id": "carol", "ttl_hours": 1}))
    assert set(d) == {"sandbox"}
    second = d["sandbox"]["id"]
    d = ok(c.post(API, json={"user_id": "", "labels": {"k": "v"}}))
    assert set(d) == {"sandbox"} and d["sandbox"]["user_id"] == ""
    third = d["sandbox"]["id"]
    d = ok(c.post(API, json={"user_id": "carol", "limit": 10}))
    assert set(d) == {"items", "pagination"} and d["pagination"]["total"] == 2
    # pages in a stable order (created_at, then id), never overlapping
    ids = [x["id"] for x in ok(c.post(API, json={"limit": 1000}))["items"]]
    assert ids[:2] == [first["id"], second] and len(ids) == 3, ids
    p1 = ok(c.post(API, json={"limit": 2}))
    p2 = ok(c.post(API, json={"limit": 2, "offset": 2}))
    p3 = ok(c.post(API, json={"limit": 2, "offset": 10}))
    assert [x["id"] for x in p1["items"] + p2["items"]] == ids
    assert p1["pagination"] == {"total": 3, "limit": 2, "offset": 0, "has_more": True}
    assert p2["pagination"] == {"total": 3, "limit": 2, "offset": 2, "has_more": False}
    assert p3["items"] == [] and p3["pagination"]["has_more"] is False
    for x in p1["items"]:
        check_info(x)
    # filters AND-combined, Hermes status names
    wait_status(c, second, "active")
    d = ok(c.post(API, json={"user_id": "carol", "status": "active"}))
    assert second in [x["id"] for x in d["items"]] and all(x["user_id"] == "carol" for x in d["items"])
    assert ok(c.post(API, json={"status": "destroying"}))["items"] == []
    assert ok(c.post(API, json={"user_id": "nobody", "status": "active"}))["items"] == []
    refused(c.post(API, json={"status": "running"}), 400)

    # projects: another project's sandbox is not found, not listed, not touched
    pa = {"X-Project-Id": "proj-a"}
    d = ok(c.post(API, json={"user_id": "dan", "ttl_hours": 1}, headers=pa))
    other = d["sandbox"]["id"]
    assert d["sandbox"]["namespace"] == "proj-a"
    assert get_info(c, other, headers={"x-project-id": "proj-a"})["namespace"] == "proj-a"
    refused(c.get(f"{API}/{other}"), 404)
    refused(c.get(f"{API}/{other}", headers={"X-Project-Id": "proj-b"}), 404)
    refused(c.post(f"{API}/{other}/stop"), 404)
    refused(c.delete(f"{API}/{other}"), 404)
    assert other not in [x["id"] for x in ok(c.post(API, json={"limit": 1000}))["items"]]
    assert [x["id"] for x in ok(c.post(API, json={}, headers=pa))["items"]] == [other]
    refused(c.get(f"{API}/{first['id']}", headers=pa), 404)

    # bad input: an envelope error, never code 0
    for bad in ({"limit": "10"}, {"limit": -1}, {"offset": 1.5}, {"limit": 1001}, {"user_id": 5},
                {"user_id": "x", "ttl_hours": -1}, {"user_id": "x", "ttl_hours": 1.5},
                {"user_id": "x", "labels": {"a": 1}}, {"user_id": "x", "labels": []},
                {"user_id": "x", "spec": {"cpu": "abc"}}, {"user_id": "x", "spec": {"cpu": "1m"}},
                {"user_id": "x", "spec": {"memory": 512}}, {"user_id": "x", "spec": {"image": "nope:1"}},
                {"user_id": "x", "payloads": [{"api": "/api/v1/exec", "body": {}}]},
                {"user_id": "x", "payloads": [{"body": {}}]}, [1, 2]):
        refused(c.post(API, json=bad), 400)
    refused(c.post(API, body="{not json", headers={"Content-Type": "application/json"}), 400)
    refused(c.get(f"{API}/"), 404)
    refused(c.get(f"{API}/{uuid.uuid4()}"), 404)
    j = refused(c.get(f"{API}/not-a-uuid"))
    assert j["code"] in (400, 404)
    refused(c.request("PUT", f"{API}/{first['id']}"), 405)
    # nothing of the refused creates was made
    assert ok(c.post(API, json={"user_id": "x", "limit": 10}))["items"] == []
    for sid in (first["id"], second, third):
        ok(c.delete(f"{API}/{sid}"))
    ok(c.delete(f"{API}/{other}", headers=pa))


def test_images_allowed_refused_and_changed(server_factory):
    tag = f"sandbar/hermes-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "tag", IMAGE, tag], check=True)
    try:
        srv = server_factory(env={"SANDBAR_ALLOWED_IMAGES": f"{IMAGE}, {tag}"})
        c = srv.client()
        refused(c.post(API, json={"user_id": "u", "spec": {"image": "debian:bookworm"}}), 400)
        d = ok(c.post(API, json={"user_id": "u", "spec": {"image": tag, "memory": "1G"}}))
        sid = d["sandbox"]["id"]
        i = wait_status(c, sid, "active")
        assert i["image_tag"] == tag and i["spec"]["image"] == tag and i["spec"]["memory"] == "1G", i
        info = docker.inspect(f"sandbar-{sid}")
        assert info["Config"]["Image"].startswith("sandbar/with-agent:"), info["Config"]["Image"]
        assert info["HostConfig"]["Memory"] == 1000**3
        # PATCH image: the container is made again from it, the workspace kept
        assert stdout(c, sid, "echo kept > /workspace/f && cat /workspace/f") == "kept\n"
        old = info["Id"]
        ok(patch(c, f"{API}/{sid}", json={"image": IMAGE}))
        assert get_info(c, sid)["image_tag"] == IMAGE  # at once, even mid-recreate
        i = wait_status(c, sid, "active")
        assert i["image_tag"] == IMAGE and i["spec"]["image"] == tag  # spec: as create wrote it
        info = docker.inspect(f"sandbar-{sid}")
        assert info["Id"] != old and info["HostConfig"]["Memory"] == 1000**3
        assert stdout(c, sid, "cat /workspace/f") == "kept\n"
        ok(c.post(f"{API}/{sid}/stop"))
        wait_status(c, sid, "stopped")
        ok(c.post(f"{API}/{sid}/start"))
        assert wait_status(c, sid, "active")["image_tag"] == IMAGE
        ok(c.delete(f"{API}/{sid}"))
    finally:
        subprocess.run(["docker", "rmi", tag], check=False, capture_output=True)


def test_admin_pool_and_rollout(server_factory):
    srv = server_factory(env={"SANDBAR_WARM_POOL": "base=1"})
    c = srv.client()

    def pool():
        d = ok(c.get("/admin/pool/status"))
        for k in ("total", "warm", "active", "creating", "deleting", "deleted", "warm_pool_size", "max_total"):
            assert type(d[k]) is int and d[k] >= 0, (k, d)
        assert type(d["utilization"]) is float and 0 <= d["utilization"] <= 1, d
        assert type(d["warm_ratio"]) is float and type(d["healthy"]) is bool, d
        for k in ("last_scale_at", "last_allocate_at"):
            assert k not in d or (isinstance(d[k], str) and d[k]), d
        return d

    until(lambda: pool()["warm"] == 1, timeout=120, what="one warm member")
    d = pool()
    assert d["warm_pool_size"] == 1 and d["warm_ratio"] == 1.0 and d["healthy"] is True, d

    def rolling(r):
        d = ok(r)
        assert d["phase"] in ("idle", "running") and type(d["progress"]) is float, d
        for k in ("warm_total", "warm_updated", "active_total", "active_updated"):
            assert type(d[k]) is int, d
        for k in ("id", "duration", "message", "error", "target_image"):
            assert isinstance(d[k], str), d
        for k in ("started_at", "completed_at"):
            assert k not in d or (isinstance(d[k], str) and d[k]), d
        return d

    s = rolling(c.get("/admin/rolling/status"))
    assert s["phase"] == "idle" and s["target_image"] == IMAGE and "started_at" not in s, s
    refused(c.post("/admin/rolling/start", json={"image": 5}), 400)
    s = rolling(c.post("/admin/rolling/start", json={}))
    assert s["phase"] == "running" and s["target_image"] == IMAGE and s["id"], s
    # creates keep working during it
    sid = ok(c.post(API, json={"user_id": "u", "ttl_hours": 1}))["sandbox"]["id"]
    until(lambda: rolling(c.get("/admin/rolling/status"))["phase"] == "idle", timeout=120, what="rollout done")
    s = rolling(c.get("/admin/rolling/status"))
    assert s["progress"] == 1.0 and s["completed_at"] and s["started_at"], s
    wait_status(c, sid, "active")
    d = pool()
    assert d["active"] >= 1 and d["total"] >= 1, d
    # nothing running: cancel is an error, or idle
    r = c.post("/admin/rolling/cancel")
    assert r.json["code"] != 0 or r.json["data"]["phase"] == "idle", r
    ok(c.delete(f"{API}/{sid}"))
