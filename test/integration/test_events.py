"""Docker's word, live, against the real dockerd: a sandbox's container
killed, OOM-killed or removed behind sandbard's back moves its status within
moments (Docker's event stream, actor docker-events), exec then answers 409
and /start brings a stopped one back; our own stop and restart move nothing
twice; two instances watching the same containers record one move. (A break
of the stream and its resume with `since` are unit-tested against a scripted
peer, test/unit/docker/test_events.c: the shared dockerd is not restarted; a
proxy in front of it breaks the stream and drops `since` instead.)"""
import os
import re
import shutil
import socket
import tempfile
import threading
import time

from commands_util import execute
from harness import docker
from harness.wait import until
from sandboxes import templates_env, transitions

# A status change is expected within about a second; the bound is loose so a
# loaded two-core machine cannot make it flake, and the delay is printed.
BOUND_S = 5.0


def create(c, template="plain"):
    r = c.post("/api/sandboxes", json={"template": template}, timeout=120)
    assert r.status == 201, r
    return r.json


def wait_for(c, sid, status, t0=None, timeout=BOUND_S):
    """The sandbox once it shows status, and how long that took from t0
    (monotonic; default now)."""
    t0 = time.monotonic() if t0 is None else t0

    def shows():
        sb = c.get(f"/api/sandboxes/{sid}").json
        return sb if sb["status"] == status else None

    sb = until(shows, timeout=timeout, interval=0.02, what=f"sandbox {sid} to show {status}")
    return sb, time.monotonic() - t0


def test_kill_behind_our_back_stops_the_sandbox(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    sb = create(c)
    sid, cid = sb["id"], sb["container_id"]
    t0 = time.monotonic()
    docker._docker("kill", cid)  # SIGKILL to the agent, PID 1: exit code 137
    got, delay = wait_for(c, sid, "stopped", t0)
    print(f"docker kill -> stopped in {delay * 1000:.0f} ms (from before the docker CLI ran)")
    assert got["status_reason"] == "exited with code 137", got
    assert not docker.running(cid)
    r = execute(c, sid, "true")
    assert r.status == 409 and r.json["error"]["code"] == "sandbox_not_running", r
    r = c.post(f"/api/sandboxes/{sid}/start")
    assert r.status == 200 and r.json["status"] == "running", r
    assert r.json["status_reason"] is None
    r = execute(c, sid, "echo back")
    assert r.status == 200 and r.json["stdout"] == "back\n", r
    moves = transitions(srv, sid)
    assert [m[:2] for m in moves] == [("-", "creating"), ("creating", "running"), ("running", "stopped"),
                                      ("stopped", "starting"), ("starting", "running")], moves
    assert moves[2][2:] == ("docker-events", "exited with code 137"), moves
    assert c.delete(f"/api/sandboxes/{sid}").status == 204


def test_oom_kill_says_so(server_factory):
    srv = server_factory(env=templates_env(SANDBOX_MEMORY_LIMIT="64m"))
    c = srv.client()
    sb = create(c)
    sid, cid = sb["id"], sb["container_id"]
    # The kernel kills the process of the memory cgroup with the highest
    # score: the agent's (PID 1) is raised so that it is the one, and the
    # container dies with it; five allocators of 20 MiB each pass 64 MiB.
    t0 = time.monotonic()
    r = c.post(f"/api/sandboxes/{sid}/commands", json={
        "command": "echo 1000 > /proc/1/oom_score_adj; "
                   "for i in 1 2 3 4 5 6 7 8; do (head -c 20m /dev/zero | tail > /dev/null) & done; wait"})
    assert r.status == 201, r
    deadline = time.monotonic() + 30
    while (got := c.get(f"/api/sandboxes/{sid}").json)["status"] != "stopped":
        # past the bound, say whether Docker saw the kill (the event went missing) or not
        assert time.monotonic() < deadline, (f"no stop within 30 s; Docker: {docker.inspect(cid)['State']}; "
                                             f"commands: {c.get(f'/api/sandboxes/{sid}/commands').json}")
        time.sleep(0.02)
    delay = time.monotonic() - t0
    print(f"allocating command -> OOM kill -> stopped in {delay * 1000:.0f} ms")
    assert got["status_reason"] == "oom", got
    assert docker.inspect(cid)["State"]["OOMKilled"] is True
    assert transitions(srv, sid)[-1][:3] == ("running", "stopped", "docker-events")
    assert c.delete(f"/api/sandboxes/{sid}").status == 204


def test_container_removed_behind_our_back_is_an_error(server_factory):
    srv = server_factory(env=templates_env())
    c = srv.client()
    running, stopped = create(c), create(c)
    assert c.post(f"/api/sandboxes/{stopped['id']}/stop").status == 200
    for what, sb in (("running", running), ("stopped", stopped)):
        t0 = time.monotonic()
        docker.remove_containers([sb["container_id"]])
        got, delay = wait_for(c, sb["id"], "error", t0)
        print(f"docker rm -f of a {what} sandbox -> error in {delay * 1000:.0f} ms")
        assert got["status_reason"] == "the container was removed", got
        # a running one may be seen dying first (-> stopped), then removed
        last = transitions(srv, sb["id"])[-1]
        assert last[1:] == ("error", "docker-events", "the container was removed"), last
        assert last[0] in ("running", "stopped"), last
        assert c.delete(f"/api/sandboxes/{sb['id']}").status == 204
        assert docker.volumes(f"sandbar.sandbox={sb['id']}") == []


def test_our_own_stop_and_restart_move_nothing_twice(server_factory):
    srv = server_factory(env=templates_env(SANDBAR_LOG_LEVEL="debug"))
    c = srv.client()
    sid = create(c)["id"]
    mark = srv.log_mark()
    assert c.post(f"/api/sandboxes/{sid}/stop").json["status"] == "stopped"
    # the die was seen and left to the stop that made it
    assert srv.wait_log(f"sandbox={sid} docker events: die left alone: the sandbox is stopp", since=mark)
    assert [t[:2] for t in transitions(srv, sid)] == [
        ("-", "creating"), ("creating", "running"), ("running", "stopping"), ("stopping", "stopped")]
    assert c.post(f"/api/sandboxes/{sid}/start").json["status"] == "running"
    mark = srv.log_mark()
    r = c.post(f"/api/sandboxes/{sid}/restart")
    assert r.status == 200 and r.json["status"] == "running", r
    # its die is handled once the stop moved: left alone, or found running again

    def handled():
        log = srv.log_text()[mark:]
        return f"sandbox={sid} docker events: die left alone" in log or \
            f"sandbox={sid} docker events: the container runs again" in log

    until(handled, what="the restart's die handled")
    assert c.get(f"/api/sandboxes/{sid}").json["status"] == "running"
    assert [t[1] for t in transitions(srv, sid)][4:] == ["starting", "running", "stopping", "stopped", "starting",
                                                         "running"]
    assert all(t[2] != "docker-events" for t in transitions(srv, sid))
    assert c.delete(f"/api/sandboxes/{sid}").status == 204


def test_two_instances_record_one_move(server_factory):
    a = server_factory(env=templates_env())
    b = server_factory(env=templates_env(DATABASE_URL=a.database_url, SANDBAR_CLUSTER=a.database))
    ca, cb = a.client(), b.client()
    sb = create(ca)
    sid = sb["id"]
    docker._docker("kill", sb["container_id"])
    wait_for(ca, sid, "stopped")
    wait_for(cb, sid, "stopped")
    # both watch; the compare-and-set let one of them move
    moves = [t for t in transitions(a, sid) if t[1] == "stopped"]
    assert moves == [("running", "stopped", "docker-events", "exited with code 137")], moves
    assert ca.delete(f"/api/sandboxes/{sid}").status == 204


class EventsProxy:
    """A unix socket in front of dockerd that forwards every request (sandbard
    opens one connection per request) and holds the /events streams in hand:
    they can be broken, refused while `blocked`, and opened again without
    `since` (`forget`), as after a restart of dockerd, whose buffer is empty."""

    def __init__(self, upstream="/var/run/docker.sock"):
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="sbev", dir="/tmp")
        self.path = os.path.join(self.dir, "docker.sock")
        self.blocked = False
        self.forget = False
        self.streams = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        head = b""
        while b"\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                return
            head += chunk
        line, rest = head.split(b"\r\n", 1)
        events = b"/events" in line.split(b" ")[1] if b" " in line else False
        if events and self.blocked:
            client.close()
            return
        if events and self.forget:
            line = re.sub(rb"since=[^&\s]*&?", b"", line)
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(self.upstream)
        up.sendall(line + b"\r\n" + rest)
        if events:
            with self.lock:
                self.streams.append((client, up))
        threading.Thread(target=self._pump, args=(up, client), daemon=True).start()
        self._pump(client, up)

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def break_streams(self):
        with self.lock:
            streams, self.streams = self.streams, []
        for pair in streams:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(streams)

    def close(self):
        self.sock.close()
        self.break_streams()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_a_death_the_stream_missed_is_found_when_it_flows_again(server_factory):
    """dockerd cannot always replay what a broken stream missed (it keeps 256
    events, none across its restart): once the stream flows again, running
    sandboxes are checked against their containers."""
    proxy = EventsProxy()
    try:
        srv = server_factory(env={**templates_env(), "DOCKER_HOST": f"unix://{proxy.path}"})
        c = srv.client()
        sb = create(c)
        sid, cid = sb["id"], sb["container_id"]
        until(lambda: proxy.streams, timeout=BOUND_S, what="the event stream through the proxy")
        proxy.blocked = True
        assert proxy.break_streams() >= 1
        docker._docker("kill", cid)
        time.sleep(0.5)
        proxy.forget = True  # opened again with no since: the die is not replayed
        proxy.blocked = False
        t0 = time.monotonic()
        got, delay = wait_for(c, sid, "stopped", t0, timeout=15)
        print(f"stream flowing again -> stopped in {delay * 1000:.0f} ms")
        last = transitions(srv, sid)[-1]
        assert last[:3] == ("running", "stopped", "reconciler"), last
        assert c.delete(f"/api/sandboxes/{sid}").status == 204
    finally:
        proxy.close()
