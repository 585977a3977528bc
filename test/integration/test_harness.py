"""Checks of the test harness itself: databases, PostgreSQL stop/start,
Docker by label, the raw HTTP helpers, a client that never sends a request
twice, and a teardown that catches a server which died on its own."""
import http.server
import os
import signal
import socket
import threading
import time

import pytest

from harness import client as httpc
from harness import docker, pg
from harness.server import ServerError


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


class _CountingServer:
    """A loopback HTTP peer that counts the requests it reads and, per
    connection, answers the first `answer` of them (keep-alive) and then
    closes: either without answering (drop=True) or after the answer."""

    def __init__(self, answer, drop):
        self.answer, self.drop = answer, drop
        self.requests = 0
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buf = b""
                answered = 0
                while True:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                    if b"\r\n\r\n" not in buf:
                        break
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            n = int(line.split(b":")[1])
                            while len(buf) < n:
                                buf += conn.recv(65536)
                            buf = buf[n:]
                    self.requests += 1
                    if answered == self.answer and self.drop:
                        break  # read, never answered: the connection goes
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    answered += 1
                    if answered == self.answer:
                        if not self.drop:
                            time.sleep(0.05)  # the answer is read before the end of file comes
                            break

    def close(self):
        self.sock.close()


def test_client_never_sends_a_request_twice():
    # the second request on a kept-alive connection is read, then the
    # connection is dropped: the POST raises and was sent exactly once
    peer = _CountingServer(answer=1, drop=True)
    try:
        c = httpc.Client("127.0.0.1", peer.port, timeout=5)
        assert c.post("/a", json={}).status == 200
        with pytest.raises(OSError):
            c.post("/b", json={"n": 1})
        time.sleep(0.2)
        assert (peer.requests, peer.connections) == (2, 1)
    finally:
        peer.close()


def test_client_replaces_a_connection_the_server_closed():
    # the server answers once and closes its end: the next request goes out
    # on a new connection, once
    peer = _CountingServer(answer=1, drop=False)
    try:
        c = httpc.Client("127.0.0.1", peer.port, timeout=5)
        assert c.post("/a", json={}).status == 200
        time.sleep(0.2)
        assert c.post("/b", json={}).status == 200
        assert (peer.requests, peer.connections) == (2, 2)
    finally:
        peer.close()


def test_teardown_catches_a_server_that_died_on_its_own(run):
    # an abort the test did not cause (as an ASan report after the last
    # request would be): stopping it, as the fixtures do at teardown, fails
    srv = run.new_server(name=f"{run.run_id}_died_on_its_own")
    try:
        srv.start()
        os.kill(srv.pid, signal.SIGABRT)
        srv.proc.wait(10)
        with pytest.raises(ServerError, match="died on its own with status -6"):
            srv.stop()
        assert srv.stop() is None  # reported once
    finally:
        run.cleanup([srv.database])
        run.drop_databases([srv.database])
