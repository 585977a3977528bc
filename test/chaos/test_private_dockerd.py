"""The chaos suite's own dockerds serve sandboxes like the machine's: a local one
on a socket, and a remote one across a network namespace over TCP (where
sandbard reaches commands and previews only through the agent)."""
import pytest


@pytest.mark.parametrize("where", ["local", "remote"])
def test_a_private_dockerd_serves_a_sandbox(request, on_dockerd, where):
    dockerd = request.getfixturevalue(f"{where}_dockerd")
    srv = on_dockerd(dockerd)
    c = srv.client()
    r = c.post("/api/sandboxes", json={"template": "base", "name": where}, timeout=120)
    assert r.status == 201, r
    sid = r.json["id"]
    r = c.post(f"/api/sandboxes/{sid}/execute", json={"command": "echo hi"}, timeout=30)
    assert r.status == 200 and r.json["stdout"] == "hi\n", r
    cid = c.get(f"/api/sandboxes/{sid}").json["container_id"]
    assert dockerd.docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "true"
    assert c.delete(f"/api/sandboxes/{sid}").status == 204
    assert dockerd.docker("inspect", cid, check=False).returncode != 0
