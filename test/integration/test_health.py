"""Smoke test: the server starts, answers /health, and stops cleanly."""


def test_health(client):
    r = client.get("/health")
    assert r.status == 200, r
    assert r.json == {"status": "ok"}
    assert r.header("content-type", "").startswith("application/json")
    assert r.header("x-request-id"), f"no X-Request-Id in {r.headers}"


def test_restart_keeps_answering(server):
    server.restart()
    assert server.client().get("/health").status == 200
