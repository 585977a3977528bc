"""Admission control: with SANDBAR_MEMORY_OVERCOMMIT set so that only a few
sandboxes' memory limits fit beside the Docker host's memory, the next
create or start is refused with 503 `capacity` and Retry-After, leaving no
row and no container; running idle-stop sandboxes are stopped first, the
least recently active, just enough of them; concurrent creates cannot all
pass; 0 turns it off."""
import concurrent.futures

from harness import docker, pg
from sandboxes import check_shape, templates_env, transitions

MIB = 1 << 20
SIZE = 128 * MIB  # SANDBOX_MEMORY_LIMIT of these servers: a default-sized sandbox


def fitting(n, slack=64 * MIB):
    """A server env where n default-sized sandboxes fit, with slack bytes to spare."""
    overcommit = (n * SIZE + slack) / docker.mem_total()
    return templates_env(SANDBOX_MEMORY_LIMIT="128m", SANDBAR_MEMORY_OVERCOMMIT=repr(overcommit))


def create(c, **body):
    r = c.post("/api/sandboxes", json={"template": "plain", **body}, timeout=120)
    assert r.status == 201, r
    return r.json


def refused(r):
    assert r.status == 503, r
    assert set(r.json) == {"error"} and set(r.json["error"]) == {"code", "message"}, r.json
    assert r.json["error"]["code"] == "capacity", r.json
    assert "SANDBAR_MEMORY_OVERCOMMIT" in r.json["error"]["message"], r.json
    assert r.header("Retry-After") == "1", r.headers


def statuses(srv):
    out = pg.psql("SELECT status, count(*) FROM sandboxes GROUP BY status ORDER BY status", url=srv.database_url)
    return dict((s, int(n)) for s, n in (line.split("|") for line in out.splitlines() if line))


def containers(srv):
    return docker.ps(f"sandbar.cluster={srv.database}")


def test_full_refuses_with_nothing_left(server_factory):
    srv = server_factory(env=fitting(2))
    c = srv.client()
    made = [create(c), create(c)]
    refused(c.post("/api/sandboxes", json={"template": "plain"}, timeout=120))
    refused(c.post("/api/sandboxes", json={"template": "plain", "wait": False}))
    assert statuses(srv) == {"running": 2}
    assert len(containers(srv)) == 2
    # what a create asks for counts: 48 MiB fits in the slack, twice does not
    small = create(c, memory="48m")
    assert small["memory"] == 48 * MIB
    refused(c.post("/api/sandboxes", json={"template": "plain", "memory": "48m"}, timeout=120))
    assert statuses(srv) == {"running": 3} and len(containers(srv)) == 3
    # a removed one gives its room back
    assert c.delete(f"/api/sandboxes/{made[0]['id']}").status == 204
    made.append(create(c))
    for sb in made[1:] + [small]:
        assert c.delete(f"/api/sandboxes/{sb['id']}").status == 204
    assert containers(srv) == []


def test_idle_stop_sandboxes_make_room(server_factory):
    srv = server_factory(env=fitting(2))
    c = srv.client()
    oldest = create(c, idle_action="stop")
    newer = create(c, idle_action="stop")
    assert c.post(f"/api/sandboxes/{newer['id']}/heartbeat").status == 204
    sb = create(c)  # needs one sandbox's room: the least recently active one's
    check_shape(sb)
    got = c.get(f"/api/sandboxes/{oldest['id']}").json
    assert got["status"] == "stopped" and got["status_reason"] == "stopped to make room (the least recently active)"
    assert docker.exists(oldest["container_id"]) and not docker.running(oldest["container_id"])
    assert [t[:3] for t in transitions(srv, oldest["id"])][-2:] == [
        ("running", "stopping", "admission"), ("stopping", "stopped", "admission")]
    assert c.get(f"/api/sandboxes/{newer['id']}").json["status"] == "running"
    assert docker.running(newer["container_id"])
    # an ask that stopping every idle-stop sandbox would not fit stops none
    r = c.post("/api/sandboxes", json={"template": "plain", "memory": "300m"}, timeout=120)
    refused(r)
    assert c.get(f"/api/sandboxes/{newer['id']}").json["status"] == "running"
    assert statuses(srv) == {"running": 2, "stopped": 1}
    for s in (oldest, newer, sb):
        assert c.delete(f"/api/sandboxes/{s['id']}").status == 204


def test_start_when_full_is_refused(server_factory):
    srv = server_factory(env=fitting(2))
    c = srv.client()
    sleeper = create(c)
    r = c.post(f"/api/sandboxes/{sleeper['id']}/stop")
    assert r.status == 200 and r.json["status"] == "stopped", r
    others = [create(c), create(c)]  # its room, taken
    refused(c.post(f"/api/sandboxes/{sleeper['id']}/start"))
    assert c.get(f"/api/sandboxes/{sleeper['id']}").json["status"] == "stopped"
    assert not docker.running(sleeper["container_id"])
    assert transitions(srv, sleeper["id"])[-1][:2] == ("stopping", "stopped")
    # a restart gives back the room it takes
    r = c.post(f"/api/sandboxes/{others[0]['id']}/restart")
    assert r.status == 200 and r.json["status"] == "running", r
    assert c.delete(f"/api/sandboxes/{others[1]['id']}").status == 204
    r = c.post(f"/api/sandboxes/{sleeper['id']}/start")
    assert r.status == 200 and r.json["status"] == "running", r
    assert docker.running(sleeper["container_id"])
    for s in (sleeper, others[0]):
        assert c.delete(f"/api/sandboxes/{s['id']}").status == 204


def test_concurrent_creates_cannot_all_pass(server_factory):
    srv = server_factory(env=fitting(2))

    def one(_):
        c = srv.client()
        try:
            return c.post("/api/sandboxes", json={"template": "plain"}, timeout=120)
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    made = [r.json for r in answers if r.status == 201]
    for r in answers:
        if r.status != 201:
            refused(r)
    assert len(made) == 2, [r.status for r in answers]
    assert statuses(srv) == {"running": 2} and len(containers(srv)) == 2
    c = srv.client()
    for sb in made:
        assert c.delete(f"/api/sandboxes/{sb['id']}").status == 204


def test_off_never_refuses(server_factory):
    # three sandboxes of four times the host's memory each: 12x, past the default 8x
    big = 4 * docker.mem_total() // MIB
    srv = server_factory(env=templates_env(SANDBAR_MEMORY_OVERCOMMIT="0", SANDBAR_MAX_MEMORY=f"{big}m"))
    c = srv.client()
    made = [create(c, memory=f"{big}m") for _ in range(3)]
    assert all(sb["memory"] == big * MIB for sb in made)
    assert statuses(srv) == {"running": 3}
    for sb in made:
        assert c.delete(f"/api/sandboxes/{sb['id']}").status == 204
