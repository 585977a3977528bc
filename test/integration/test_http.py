"""The HTTP front door as clients meet it: request ids, limits, malformed
requests, pipelining, authentication and the OpenAPI document."""
import json
import subprocess

from harness import paths
from harness.client import parse_raw


def test_open_routes(client):
    assert client.get("/hello").json == {"message": "hello, world"}
    r = client.get("/openapi.json")
    assert r.status == 200 and r.json["openapi"].startswith("3.")
    assert "/api/sandboxes/{id}/heartbeat" in r.json["paths"]
    assert r.header("x-request-id")
    r = client.get("/health", headers={"X-Request-Id": "trace-abc.1"})
    assert r.header("x-request-id") == "trace-abc.1"


def test_every_documented_route_is_served(client):
    """Each path and method of the OpenAPI document reaches a handler: none
    answers the router's own 404 (no route) or 405."""
    doc = client.get("/openapi.json").json
    sid = "00000000-0000-4000-8000-000000000000"
    asked = 0
    for path, item in doc["paths"].items():
        url = path.replace("{id}", sid).replace("{cid}", "1").replace("{tid}", sid)
        for method in ("get", "post", "put", "patch", "delete"):
            if method not in item or path.endswith("/terminal"):
                continue
            # a body no route takes (a create of {} would make a sandbox)
            r = client.request(method.upper(), url, body=b"[]", headers={"Content-Type": "application/json"})
            asked += 1
            assert r.status != 405, (method, path, r)
            if r.status == 404:
                assert not r.json["error"]["message"].startswith("no route"), (method, path, r)
    assert asked >= 45  # every route but the terminal (a WebSocket)


def test_limits_and_malformed(server):
    status, headers, body = parse_raw(server.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"))
    assert status == 431 and json.loads(body)["error"]["code"] == "header_too_large"
    status, headers, body = parse_raw(server.raw(b"BLAH\r\n\r\n"))
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    status, headers, body = parse_raw(server.raw(
        b"POST /api/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(big)).encode() + b"\r\n\r\n" + big))
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"


def test_pipelined_requests_answered_in_order(server):
    out = server.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first = out.index(b"hello, world")
    second = out.index(b'{"status":"ok"}')
    assert out.count(b"HTTP/1.1 200") == 2 and first < second


def test_bearer_tokens(server_factory):
    srv = server_factory(env={"SANDBAR_API_TOKENS": "alpha, beta"})
    c = srv.client()
    assert c.get("/health").status == 200
    r = c.get("/api/sandboxes")
    assert r.status == 401 and r.json["error"]["code"] == "unauthorized"
    assert c.get("/api/sandboxes", headers={"Authorization": "Bearer gamma"}).status == 401
    assert c.get("/api/sandboxes", headers={"Authorization": "Bearer alph"}).status == 401
    assert c.get("/api/sandboxes", headers={"Authorization": "Bearer beta"}).status == 200
    assert c.get("/api/sandboxes", headers={"Authorization": "Bearer alpha"}).status == 200


def test_help_lists_every_setting():
    out = subprocess.run([paths.sandbard_binary(), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    for name in ["DATABASE_URL", "SERVER_ADDR", "DEVCONTAINERS_PATH", "DOCKER_HOST", "SANDBOX_IDLE_TIMEOUT",
                 "SANDBOX_MEMORY_LIMIT", "SANDBOX_CPU_LIMIT", "SANDBAR_API_TOKENS", "SANDBAR_REAPER_INTERVAL"]:
        assert name in out.stdout, name
    assert "15m" in out.stdout


def test_bad_configuration_refused(server_factory):
    srv = server_factory(env={"SANDBOX_IDLE_TIMEOUT": "soon"}, start=False)
    out = subprocess.run([srv.binary], env=srv.environment(), capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "SANDBOX_IDLE_TIMEOUT" in out.stderr
