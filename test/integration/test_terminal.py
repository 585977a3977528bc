"""The terminal: a PTY shell over a WebSocket. Terminal bytes in binary
frames, JSON control in text frames; `stty size` follows resize; errors before
the upgrade are plain HTTP errors; a client that vanishes hangs the shell up."""
import json
import subprocess
import time

from harness.ws import Closed, WebSocket


def shell_pids(cid):
    out = subprocess.run(["docker", "exec", cid, "ps", "-eo", "pid=,comm="], capture_output=True, text=True,
                         timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] in (["bash"], ["sh"])]


def output_until(ws, *needles, timeout=10):
    got = b""

    def seen(binary, payload):
        nonlocal got
        if binary:
            got += payload
        return all(n in got for n in needles)

    ws.recv_until(seen, timeout=timeout)
    return got


def test_terminal_session_resize_and_exit(server, client):
    sb = client.post("/api/sandboxes", json={"template": "base"}).json
    ws = WebSocket(server.host, server.port, f"/api/sandboxes/{sb['id']}/terminal?rows=30&cols=100")
    assert ws.status == 101, ws.head
    binary, first = ws.recv()
    started = json.loads(first)
    assert not binary and started["type"] == "started" and started["pid"] > 0 and len(started["id"]) == 36
    ws.send(b"stty size; id -un\n")
    output_until(ws, b"30 100", b"sandbox\r\n")  # the remote user, on a PTY (CRLF)
    ws.send(json.dumps({"type": "resize", "rows": 40, "cols": 120}))
    ws.send(json.dumps({"type": "input", "data": "stty size\n"}))
    output_until(ws, b"40 120")
    ws.send(json.dumps({"type": "nonsense"}))
    msgs = ws.recv_until(lambda b, p: not b and json.loads(p)["type"] == "error")
    assert json.loads(msgs[-1][1])["code"] == "invalid_control"
    ws.send(b"exit 3\n")
    msgs = ws.recv_until(lambda b, p: not b and json.loads(p)["type"] == "exit")
    assert json.loads(msgs[-1][1]) == {"type": "exit", "exit_code": 3, "signal": 0}
    try:
        ws.recv()
        raise AssertionError("expected the server to close")
    except Closed:
        assert ws.close_code == 1000
    ws.close()
    # the session is a command of the sandbox like any other (its record is
    # written once it ended, off the latency path: give it a moment)
    deadline = time.monotonic() + 5
    while True:
        cmds = client.get(f"/api/sandboxes/{sb['id']}/commands").json
        if any(c["id"] == started["id"] and c["status"] == "exited" and c["exit_code"] == 3 for c in cmds):
            break
        assert time.monotonic() < deadline, cmds
        time.sleep(0.05)
    assert client.delete(f"/api/sandboxes/{sb['id']}").status == 204


def test_vanished_client_hangs_up_the_shell(server, client):
    sb = client.post("/api/sandboxes", json={"template": "base"}).json
    before = shell_pids(sb["container_id"])
    ws = WebSocket(server.host, server.port, f"/api/sandboxes/{sb['id']}/terminal")
    assert ws.status == 101
    ws.recv()
    ws.send(b"echo ready\n")
    output_until(ws, b"ready")
    assert len(shell_pids(sb["container_id"])) > len(before)
    ws.sock.close()  # no close frame: the client is just gone
    deadline = time.monotonic() + 10
    while shell_pids(sb["container_id"]) != before:
        assert time.monotonic() < deadline, shell_pids(sb["container_id"])
        time.sleep(0.1)
    assert client.delete(f"/api/sandboxes/{sb['id']}").status == 204


def test_terminal_errors_are_http_errors(server, client):
    unknown = "00000000-0000-4000-8000-000000000000"
    ws = WebSocket(server.host, server.port, f"/api/sandboxes/{unknown}/terminal")
    assert ws.status == 404, ws.head
    ws = WebSocket(server.host, server.port, "/api/sandboxes/nope/terminal")
    assert ws.status == 400 and "invalid_id" in ws.head + ws.buf.decode(), ws.head
    ws = WebSocket(server.host, server.port, f"/api/sandboxes/{unknown}/terminal?rows=0")
    assert ws.status == 400
    r = client.get(f"/api/sandboxes/{unknown}/terminal")
    assert r.status == 400 and r.json["error"]["code"] == "bad_websocket_handshake"
