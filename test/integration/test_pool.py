"""The warm pool against the real dockerd and PostgreSQL: members made ahead
(status warm, never listed), a create claiming one with its own name, env,
labels, idle settings and memory, the pool refilling, concurrent creates
never sharing a member, a rollout replacing members after the template's
image changes (and cancelling one), failing members backing off, members
surviving a restart of sandbard, and the pool routes' bad input."""
import concurrent.futures
import contextlib
import json
import subprocess
import time
import uuid

import pytest

from commands_util import execute
from harness import docker, pg
from harness.wait import until
from sandboxes import check_shape, templates_env, transitions

POOL_KEYS = {"template", "target", "warm", "outdated", "creating", "image", "run_image", "last_error",
             "last_fill_at", "last_claim_at", "rollout"}
ROLLOUT_KEYS = {"id", "phase", "image", "trigger", "total", "replaced", "progress", "started_at",
                "completed_at", "error"}


def pool_of(c, template):
    r = c.get("/api/pool")
    assert r.status == 200, r
    assert set(r.json) == {"templates"}
    [t] = [t for t in r.json["templates"] if t["template"] == template]
    assert set(t) == POOL_KEYS and set(t["rollout"]) == ROLLOUT_KEYS, t
    return t


def members(srv, template, status="warm"):
    out = pg.psql(f"SELECT id FROM sandboxes WHERE template = '{template}' AND in_pool AND status = '{status}' "
                  "ORDER BY created_at", url=srv.database_url)
    return out.split()


def wait_warm(srv, c, template, n, timeout=120):
    until(lambda: pool_of(c, template)["warm"] == n and len(members(srv, template)) == n, timeout=timeout,
          what=f"{n} warm {template} member(s)")


def test_claim_carries_the_create_and_the_pool_refills(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_WARM_POOL="plain=2"))
    c = srv.client()
    wait_warm(srv, c, "plain", 2)
    st = pool_of(c, "plain")
    assert st["target"] == 2 and st["creating"] == 0 and st["image"] == "sandbar/base:latest"
    assert st["run_image"].startswith("sandbar/with-agent:") and st["last_error"] is None
    assert st["rollout"]["phase"] == "idle" and st["rollout"]["id"] is None
    # never listed, never counted
    r = c.get("/api/sandboxes")
    assert r.status == 200 and r.json == [] and r.header("X-Total-Count") == "0"
    assert c.get("/api/sandboxes?status=warm").status == 400
    warm = members(srv, "plain")
    for sid in warm:
        info = docker.inspect(f"sandbar-{sid}")
        assert info["State"]["Running"] and info["Config"]["Image"] == st["run_image"]

    r = c.post("/api/sandboxes", json={"template": "plain", "name": "mine", "env_vars": {"FOO": "bar"},
                                       "labels": {"team": "a"}, "memory": "1g", "idle_timeout": 600,
                                       "idle_action": "stop", "ttl": 3600})
    assert r.status == 201, r
    sb = r.json
    check_shape(sb)
    assert sb["id"] == warm[0]  # the oldest member
    assert sb["status"] == "running" and sb["name"] == "mine" and sb["env_vars"] == {"FOO": "bar"}
    assert sb["labels"] == {"team": "a"} and sb["idle_timeout"] == 600 and sb["idle_action"] == "stop"
    assert sb["memory"] == 1024**3 and sb["ends_at"] is not None
    assert docker.inspect(sb["container_id"])["HostConfig"]["Memory"] == 1024**3
    # the create's env reaches its commands through the agent
    r = execute(c, sb["id"], "printf %s \"$FOO\"")
    assert r.status == 200 and r.json["stdout"] == "bar", r
    moves = transitions(srv, sb["id"])
    assert [m[:3] for m in moves[:2]] == [("-", "creating", "pool"), ("creating", "warm", "pool")], moves
    assert len(moves) == 3 and moves[2][:2] == ("warm", "running") and moves[2][3] == "claimed", moves
    r = c.get("/api/sandboxes")
    assert [s["id"] for s in r.json] == [sb["id"]]
    # the pool makes another
    wait_warm(srv, c, "plain", 2)
    assert sb["id"] not in members(srv, "plain")
    assert pool_of(c, "plain")["last_claim_at"] is not None
    assert c.delete(f"/api/sandboxes/{sb['id']}").status == 204


def test_concurrent_creates_never_share_a_member(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_WARM_POOL="plain=2"))
    c = srv.client()
    wait_warm(srv, c, "plain", 2)
    warm = set(members(srv, "plain"))

    def one(i):
        return c.__class__(srv.host, srv.port).post("/api/sandboxes", json={"template": "plain", "name": f"n{i}"},
                                                    timeout=120)

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(one, range(4)))
    assert [r.status for r in results] == [201] * 4, results
    ids = [r.json["id"] for r in results]
    assert len(set(ids)) == 4
    claimed = [i for i in ids if i in warm]
    assert len(claimed) == 2  # the two members, and two made for the occasion
    assert sorted(r.json["name"] for r in results) == ["n0", "n1", "n2", "n3"]
    for r in results:
        assert docker.running(r.json["container_id"])
        assert c.delete(f"/api/sandboxes/{r.json['id']}").status == 204
    wait_warm(srv, c, "plain", 2)


def _image(tag, marker):
    r = subprocess.run(["docker", "build", "-q", "-t", tag, "--label", docker.MANAGED, "-"],
                       input=f"FROM sandbar/base:latest\nRUN echo {marker} > /etc/pool-marker\n",
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return docker.inspect(tag, kind="image")["Id"]


def _template(tmp_path, image):
    d = tmp_path / "templates" / "rolling"
    d.mkdir(parents=True)
    (d / "devcontainer.json").write_text(json.dumps({"image": image, "workspaceFolder": "/workspace"}))
    return str(tmp_path / "templates")


@contextlib.contextmanager
def rolling_pool(server_factory, tmp_path, check):
    """A server pooling 2 sandboxes of template `rolling`, whose image (tag)
    the test rebuilds with _image; the images go afterwards."""
    tag = f"sandbar/test-pool-{uuid.uuid4().hex[:8]}:latest"
    first = _image(tag, "one")
    srv = server_factory(env={"DEVCONTAINERS_PATH": _template(tmp_path, tag), "SANDBAR_WARM_POOL": "rolling=2",
                              "SANDBAR_WARM_POOL_CHECK": check})
    c = srv.client()
    try:
        wait_warm(srv, c, "rolling", 2)
        yield srv, c, tag, first
    finally:
        srv.stop()
        docker.remove_image(tag)
        subprocess.run(["docker", "rmi", "-f", first], capture_output=True, timeout=60)


def test_rollout_replaces_members_after_the_image_changes(server_factory, tmp_path):
    with rolling_pool(server_factory, tmp_path, "500ms") as (srv, c, tag, first):
        old = members(srv, "rolling")
        old_image = pool_of(c, "rolling")["run_image"]
        # nothing to replace: a rollout asked for ends at once, progress 1.0
        r = c.post("/api/pool/rollout", json={"template": "rolling"})
        assert r.status == 202, r
        [t] = r.json["templates"]
        # (with nothing to replace it may be over before the answer is written)
        assert t["rollout"]["phase"] in ("running", "done") and t["rollout"]["trigger"].startswith("asked by")
        until(lambda: pool_of(c, "rolling")["rollout"]["phase"] == "done", timeout=30, what="an empty rollout")
        ro = pool_of(c, "rolling")["rollout"]
        assert ro["total"] == 0 and ro["progress"] == 1.0 and ro["completed_at"] is not None
        assert members(srv, "rolling") == old
        r = c.delete("/api/pool/rollout")
        assert r.status == 409 and r.json["error"]["code"] == "no_rollout", r

        # the template's image changes: the pool sees it by itself, one member at a time
        second = _image(tag, "two")
        assert second != first
        until(lambda: pool_of(c, "rolling")["rollout"]["trigger"] == "image changed", timeout=30,
              what="the rollout started by the image change")
        seen_members = set()

        def done():
            st = pool_of(c, "rolling")
            seen_members.add(st["warm"] + st["creating"])
            return st["rollout"]["phase"] == "done"
        until(done, timeout=180, what="the rollout done")
        st = pool_of(c, "rolling")
        ro = st["rollout"]
        assert ro["total"] == 2 and ro["replaced"] == 2 and ro["progress"] == 1.0, ro
        assert st["run_image"] != old_image and st["outdated"] == 0 and st["warm"] == 2
        assert max(seen_members) <= 3  # never more than one extra member at a time
        new = members(srv, "rolling")
        assert not set(new) & set(old)
        for sid in new:
            rc, out = docker.exec_(f"sandbar-{sid}", "cat", "/etc/pool-marker")
            assert rc == 0 and out == "two\n"
        for sid in old:
            assert not docker.exists(f"sandbar-{sid}")
            assert transitions(srv, sid)[-1][1:] == ("deleted", "pool", "replaced by a rollout")
        # a claim now gets the new image
        r = c.post("/api/sandboxes", json={"template": "rolling"})
        assert r.status == 201 and r.json["id"] in new
        assert c.delete(f"/api/sandboxes/{r.json['id']}").status == 204


def test_a_rollout_can_be_cancelled_and_members_stay(server_factory, tmp_path):
    with rolling_pool(server_factory, tmp_path, "1h") as (srv, c, tag, first):
        old = members(srv, "rolling")
        _image(tag, "two")
        r = c.post("/api/pool/rollout", json={"template": "rolling"})
        assert r.status == 202, r
        r = c.post("/api/pool/rollout", json={"template": "rolling"})
        assert r.status == 409 and r.json["error"]["code"] == "rollout_running", r
        r = c.delete("/api/pool/rollout?template=rolling")
        assert r.status == 200, r
        [t] = r.json["templates"]
        assert t["rollout"]["phase"] == "cancelled" and t["rollout"]["completed_at"] is not None
        time.sleep(1.5)  # whatever was under way settles; nothing more is replaced
        left = members(srv, "rolling")
        assert len(left) == 2 and set(old) & set(left)
        assert pool_of(c, "rolling")["rollout"]["phase"] == "cancelled"


def test_a_failing_template_backs_off(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_WARM_POOL="missing-image=2"))
    c = srv.client()
    until(lambda: pool_of(c, "missing-image")["last_error"], timeout=30, what="the failure reported")
    st = pool_of(c, "missing-image")
    assert "not present" in st["last_error"] and st["warm"] == 0
    time.sleep(3)
    # an image that cannot be had stops the pool before any create: no rows pile up
    out = pg.psql("SELECT count(*) FROM sandboxes", url=srv.database_url).strip()
    assert out == "0", out


def test_failing_members_back_off_and_are_never_listed(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_WARM_POOL="failing=1"))
    c = srv.client()
    until(lambda: pool_of(c, "failing")["last_error"], timeout=60, what="the failure reported")
    assert "exit" in pool_of(c, "failing")["last_error"]
    time.sleep(4)
    # backing off 1 s, 2 s, 4 s, ...: a few tries, not one per pass
    failed = members(srv, "failing", status="error") + members(srv, "failing", status="deleted")
    assert 1 <= len(failed) <= 4, failed
    # failed members do not pile up: the pool deletes them (their create removed their objects)
    until(lambda: members(srv, "failing", status="deleted"), timeout=30, what="a failed member deleted")
    gone = members(srv, "failing", status="deleted")[0]
    assert transitions(srv, gone)[-1][1:] == ("deleted", "pool", "a failed pool member")
    assert c.get("/api/sandboxes").json == []
    assert c.get("/api/sandboxes?status=error").json == []


def test_members_outlive_a_restart_and_serve_claims(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_WARM_POOL="plain=1"))
    c = srv.client()
    wait_warm(srv, c, "plain", 1)
    [member] = members(srv, "plain")
    srv.stop()
    srv.start()
    c = srv.client()
    assert members(srv, "plain") == [member]
    r = c.post("/api/sandboxes", json={"template": "plain"})
    assert r.status == 201 and r.json["id"] == member, r
    r = execute(c, member, "echo hi")
    assert r.status == 200 and r.json["stdout"] == "hi\n", r
    assert c.delete(f"/api/sandboxes/{member}").status == 204
    wait_warm(srv, c, "plain", 1)


@pytest.mark.parametrize("body,status,code", [
    ({}, 400, "invalid_template"),
    ({"template": 5}, 400, "invalid_template"),
    ({"template": "plain", "image": 5}, 400, "invalid_image"),
    ({"template": "web"}, 404, "not_pooled"),
    ({"template": "nope"}, 404, "not_pooled"),
])
def test_rollout_bad_input(server_factory, body, status, code):
    srv = server_factory(env=templates_env(SANDBAR_WARM_POOL="plain=1"))
    c = srv.client()
    r = c.post("/api/pool/rollout", json=body)
    assert r.status == status and r.json["error"]["code"] == code, r
    r = c.delete("/api/pool/rollout?template=nope")
    assert r.status == 404 and r.json["error"]["code"] == "not_pooled", r


@pytest.mark.parametrize("spec,says", [
    ("nope=2", "no template named 'nope'"),
    ("plain", "'plain' is not template=count"),
    ("plain=-1", "is not template=count"),
    ("plain=2,,", "an empty or overlong item"),
])
def test_bad_pool_setting_stops_start_up(server_factory, spec, says):
    srv = server_factory(env=templates_env(SANDBAR_WARM_POOL=spec), start=False)
    out = subprocess.run([srv.binary], env=srv.environment(), capture_output=True, text=True, timeout=10)
    assert out.returncode == 1 and says in out.stderr, out.stderr
