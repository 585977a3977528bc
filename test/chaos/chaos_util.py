"""Helpers of the chaos tests: a sandbox made from the base template, the
answer a request gets while Docker is away, and a command run once it is back."""
from harness.wait import until


def create(c, name, **kw):
    """A running sandbox of the base template (kw: more of the create body); its id."""
    r = c.post("/api/sandboxes", json={"template": "base", "name": name, **kw}, timeout=120)
    assert r.status == 201, r
    return r.json["id"]


def assert_docker_unavailable(r):
    assert r.status == 503, r
    assert r.json["error"]["code"] == "docker_unavailable", r.json
    assert r.header("retry-after") is not None, r


def exec_when_back(c, sid, word, timeout=30.0):
    """`echo word` in the sandbox, tried until the path through Docker works again."""
    def ran():
        r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": f"echo {word}"}, timeout=30)
        return r if r.status == 200 else None

    r = until(ran, timeout, f"an exec in {sid} to work again", interval=0.2)
    assert r.json["stdout"] == f"{word}\n", r
