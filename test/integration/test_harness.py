"""Checks of the test harness itself (no sandbard needed): databases,
PostgreSQL stop/start, Docker by label, the raw HTTP helpers."""
import http.server
import threading

from harness import client as httpc
from harness import docker, pg


def test_fresh_database(run):
    name, url = run.new_database()
    assert pg.psql("SELECT current_database()", url=url).strip() == name
    run.drop_databases([name])
    assert name not in pg.list_databases(run.run_id)


def test_pg_stop_start(pg_cluster):
    pg_cluster.stop()
    assert not pg_cluster.running()
    pg_cluster.start()
    assert pg_cluster.running()
    assert pg.psql("SELECT 1").strip() == "1"


def test_docker_label_helpers(run):
    r = docker._docker(
        "create", "--label", docker.MANAGED, "--label", "sandbar.test=tools",
        "--label", f"sandbar.instance={run.run_id}", "sandbar/base:latest", "true",
    )
    cid = r.stdout.strip()
    assert cid in docker.ps(docker.MANAGED, f"sandbar.instance={run.run_id}")
    assert docker.labels(cid)["sandbar.test"] == "tools"
    left_c, _ = run.cleanup()
    assert not left_c and not docker.exists(cid)


def test_http_helpers():
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"status":"ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        port = srv.server_address[1]
        status, headers, data = httpc.Client("127.0.0.1", port).get("/x")
        assert (status, data) == (200, {"status": "ok"})
        raw = httpc.raw_request("127.0.0.1", port, b"GET / HTTP/1.0\r\n\r\n")
        assert httpc.parse_raw(raw)[0] == 200
        raw = httpc.raw_request("127.0.0.1", port, b"GET / HTTP/x\r\n\r\n")
        assert b"Error code: 400" in raw  # http.server answers a bad version HTTP/0.9-style
    finally:
        srv.shutdown()
