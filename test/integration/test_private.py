"""Private previews against a real app in a real sandbox: without a token
401, a wrong or another port's 403, an expired one 403; a token in the query
traded for a cookie (302 without it), the cookie alone then loading pages;
the header on every request; the app never sees the token (header, cookie or
query); a private stopped auto_wake sandbox is not woken without one. The
mint route's bad input, and the secret kept in the data folder."""
import json
import os
import stat
import time
import urllib.parse

from sandboxes import templates_env
from preview_util import PORT, request, start_app


def make_private(c, sid):
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"private": True})
    assert r.status == 200 and r.json["private"] is True, r


def mint(c, sid, port=PORT, ttl=None):
    body = {"port": port}
    if ttl is not None:
        body["ttl_seconds"] = ttl
    r = c.post(f"/api/sandboxes/{sid}/preview-token", json=body)
    assert r.status == 201, r
    return r.json


def error(r, data):
    assert r.getheader("Content-Type") == "application/json", r.getheaders()
    return r.status, json.loads(data)["error"]["code"]


def test_private_needs_a_token_and_the_app_never_sees_it(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c)
    assert c.get(f"/api/sandboxes/{sid}").json["private"] is False
    make_private(c, sid)

    assert error(*request(srv, "GET", "/hello", host)) == (401, "preview_token_required")
    r, data = request(srv, "GET", "/hello", host, headers={"Accept": "text/html"})
    assert r.status == 401 and r.getheader("Content-Type").startswith("text/html")
    bad = {"X-Sandbar-Preview-Token": "8000.99999999999." + "0" * 64}
    assert error(*request(srv, "GET", "/hello", host, headers=bad)) == (403, "preview_token_invalid")
    assert error(*request(srv, "GET", "/hello", host, headers={"X-Sandbar-Preview-Token": "junk"})) == \
        (403, "preview_token_invalid")
    other = mint(c, sid, port=PORT + 1)["token"]
    assert error(*request(srv, "GET", "/hello", host, headers={"X-Sandbar-Preview-Token": other})) == \
        (403, "preview_token_invalid")

    t = mint(c, sid, ttl=600)
    tok = t["token"]
    assert t["expires_at"].endswith("Z")
    u = urllib.parse.urlsplit(t["url"])
    assert u.hostname == host and urllib.parse.parse_qs(u.query)["sandbar_token"] == [tok]

    # the header, on every request; the app sees neither it nor our cookie
    r, data = request(srv, "GET", "/headers?x=1", host,
                      headers={"X-Sandbar-Preview-Token": tok, "Cookie": "a=1; sandbar_preview=zz; b=2"})
    assert r.status == 200, data
    seen = json.loads(data)
    h = {k.lower(): v for k, v in seen["headers"].items()}
    assert "x-sandbar-preview-token" not in h and h["cookie"] == "a=1; b=2", h
    assert tok not in data.decode()

    # once in the query: 302 to the same URL without it, and the cookie
    r, data = request(srv, "GET", f"/headers?a=1&sandbar_token={tok}&b=2", host)
    assert r.status == 302, data
    assert r.getheader("Location") == "/headers?a=1&b=2"
    cookie = r.getheader("Set-Cookie")
    parts = [p.strip() for p in cookie.split(";")]
    assert parts[0] == f"sandbar_preview={tok}"
    assert "HttpOnly" in parts and "SameSite=Lax" in parts and "Path=/" in parts
    assert not any(p.lower().startswith("domain=") for p in parts)  # this preview host only
    age = int(next(p for p in parts if p.startswith("Max-Age="))[8:])
    assert 590 <= age <= 600
    assert request(srv, "GET", f"/hello?sandbar_token={tok}", host)[0].getheader("Location") == "/hello"

    # the cookie alone loads pages, beside the app's own cookies
    for path in ("/hello", "/headers?a=1&b=2"):
        r, data = request(srv, "GET", path, host, headers={"Cookie": f"app=x; sandbar_preview={tok}"})
        assert r.status == 200, (path, data)
    seen = json.loads(data)
    h = {k.lower(): v for k, v in seen["headers"].items()}
    assert h["cookie"] == "app=x" and seen["path"] == "/headers?a=1&b=2"
    assert tok not in data.decode()
    r, data = request(srv, "GET", "/headers", host, headers={"Cookie": f"sandbar_preview={tok}"})
    assert r.status == 200 and "cookie" not in {k.lower() for k in json.loads(data)["headers"]}
    # many short cookies without spaces: what the app gets is never longer than what came
    many = ";".join(f"c{i}" for i in range(40))
    r, data = request(srv, "GET", "/headers", host, headers={"Cookie": f"{many};sandbar_preview={tok}"})
    assert r.status == 200, data
    kept = {k.lower(): v for k, v in json.loads(data)["headers"].items()}["cookie"]
    assert [c.strip() for c in kept.split(";")] == many.split(";")
    # a query token wins over the header, and is redirected away; a bad one is refused
    r, data = request(srv, "GET", f"/hello?sandbar_token={tok}", host, headers={"X-Sandbar-Preview-Token": tok})
    assert r.status == 302 and r.getheader("Location") == "/hello"
    r, data = request(srv, "GET", "/hello?sandbar_token=", host, headers={"X-Sandbar-Preview-Token": tok})
    assert error(r, data) == (403, "preview_token_invalid")

    # expired: 403
    short = mint(c, sid, ttl=1)["token"]
    time.sleep(2.1)
    assert error(*request(srv, "GET", "/hello", host, headers={"Cookie": f"sandbar_preview={short}"})) == \
        (403, "preview_token_expired")

    # public again: no token needed, and ours still never reaches the app
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"private": False})
    assert r.status == 200 and r.json["private"] is False
    r, data = request(srv, "GET", "/headers", host, headers={"X-Sandbar-Preview-Token": tok})
    assert r.status == 200 and tok not in data.decode()
    r, data = request(srv, "GET", f"/headers?sandbar_token={tok}&z=1", host)
    assert r.status == 302 and r.getheader("Location") == "/headers?z=1" and not r.getheader("Set-Cookie")


def test_a_private_stopped_sandbox_is_not_woken_without_a_token(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c, idle_action="stop")
    make_private(c, sid)
    r = c.post(f"/api/sandboxes/{sid}/stop", timeout=60)
    assert r.status == 200 and r.json["status"] == "stopped", r
    assert error(*request(srv, "GET", "/hello", host)) == (401, "preview_token_required")
    assert c.get(f"/api/sandboxes/{sid}").json["status"] == "stopped"
    tok = mint(c, sid)["token"]
    r, data = request(srv, "GET", "/hello", host, headers={"X-Sandbar-Preview-Token": tok}, timeout=90)
    assert (r.status, data) == (200, b"hello from the app")


def test_private_ports_only(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sid, host = start_app(srv, c)
    other = f"{PORT + 1}-{sid}.preview.localhost"
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"private_ports": [PORT + 1]})
    assert r.status == 200 and r.json["private"] is False and r.json["private_ports"] == [PORT + 1], r
    assert request(srv, "GET", "/hello", host)[0].status == 200  # not a private port
    assert error(*request(srv, "GET", "/hello", other)) == (401, "preview_token_required")
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"private_ports": [PORT]})
    assert r.status == 200 and r.json["private_ports"] == [PORT], r
    assert error(*request(srv, "GET", "/hello", host)) == (401, "preview_token_required")
    tok = mint(c, sid)["token"]
    r, data = request(srv, "GET", "/hello", host, headers={"X-Sandbar-Preview-Token": tok})
    assert (r.status, data) == (200, b"hello from the app")
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"name": "kept"})
    assert r.status == 200 and r.json["private_ports"] == [PORT], r  # unchanged when not sent
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"private_ports": []})
    assert r.status == 200 and r.json["private_ports"] == [], r
    assert request(srv, "GET", "/hello", host)[0].status == 200


def test_private_at_create_and_bad_input(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    srv = server_factory(env=templates_env(SANDBAR_DATA_DIR=str(data_dir), SANDBAR_PREVIEW_TOKEN_MAX_TTL="1h"))
    c = srv.client()
    secret = data_dir / "preview.secret"
    st = os.stat(secret)
    assert st.st_size == 32 and stat.S_IMODE(st.st_mode) == 0o600

    r = c.post("/api/sandboxes", json={"template": "plain", "private": "yes"})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_private", r
    r = c.post("/api/sandboxes", json={"template": "plain", "private": True}, timeout=120)
    assert r.status == 201 and r.json["private"] is True, r
    sid = r.json["id"]
    r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"private": 1})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_private", r
    for bad in ([0], [65536], ["80"], 80, list(range(1, 34))):
        r = c.request("PATCH", f"/api/sandboxes/{sid}", json={"private_ports": bad})
        assert r.status == 400 and r.json["error"]["code"] == "invalid_private_ports", (bad, r)
    r = c.post("/api/sandboxes", json={"template": "plain", "private_ports": [0]})
    assert r.status == 400 and r.json["error"]["code"] == "invalid_private_ports", r
    r = c.post("/api/sandboxes", json={"template": "plain", "private_ports": [3000, 3001]}, timeout=120)
    assert r.status == 201 and r.json["private_ports"] == [3000, 3001] and r.json["private"] is False, r
    c.delete(f"/api/sandboxes/{r.json['id']}")

    for body, code in (({"port": 0}, "invalid_port"), ({"port": 65536}, "invalid_port"),
                       ({"port": "80"}, "invalid_port"), ({}, "invalid_port"),
                       ({"port": 80, "ttl_seconds": 0}, "invalid_ttl"),
                       ({"port": 80, "ttl_seconds": 3601}, "invalid_ttl"),
                       ({"port": 80, "ttl_seconds": "1"}, "invalid_ttl")):
        r = c.post(f"/api/sandboxes/{sid}/preview-token", json=body)
        assert r.status == 400 and r.json["error"]["code"] == code, (body, r)
    r = c.post("/api/sandboxes/00000000-0000-4000-8000-000000000000/preview-token", json={"port": 80})
    assert r.status == 404, r
    t = c.post(f"/api/sandboxes/{sid}/preview-token", json={"port": 80, "ttl_seconds": 3600})
    assert t.status == 201 and t.json["token"].startswith("80."), t
    c.delete(f"/api/sandboxes/{sid}")
    r = c.post(f"/api/sandboxes/{sid}/preview-token", json={"port": 80})
    assert r.status in (404, 409), r
