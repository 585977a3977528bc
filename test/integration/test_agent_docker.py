"""The static agent in a real container: copied into a created sandbar/base
container, started as its init, reached through `docker exec -i ... relay`
(the transport sandbard uses): a spawn/exit round trip, zombies reaped, a
quick and clean `docker stop`."""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from harness import docker
from harness.need import need
from harness.wait import until
from test_agent_host import EXITED, LIST, LIST_END, STARTED, STDOUT, Client, agent_binary, stream_bytes


def _docker(*args, timeout=60):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def container():
    binary = agent_binary()
    assert os.path.exists(binary), f"no agent binary at {binary}: build it first"
    if _docker("info").returncode != 0:
        need("docker", "dockerd does not answer")
    name = "sandbar-agent-test-" + uuid.uuid4().hex[:8]
    r = _docker("create", "--name", name, "--label", docker.MANAGED, "--label", "sandbar.test=agent",
                "--entrypoint", "/.sandbar/agent", "sandbar/base:latest", "init")
    assert r.returncode == 0, r.stderr
    d = tempfile.mkdtemp()
    try:
        os.mkdir(os.path.join(d, ".sandbar"))
        shutil.copy(binary, os.path.join(d, ".sandbar", "agent"))
        r = _docker("cp", os.path.join(d, ".sandbar"), f"{name}:/")
        assert r.returncode == 0, r.stderr
        r = _docker("start", name)
        assert r.returncode == 0, r.stderr
        yield name
    finally:
        shutil.rmtree(d)
        docker.remove_containers([name])
    assert not docker.exists(name)


def relay(name):
    """A Client whose transport is `docker exec -i <c> /.sandbar/agent relay`."""
    ours, theirs = socket.socketpair()
    p = subprocess.Popen(["docker", "exec", "-i", name, "/.sandbar/agent", "relay"], stdin=theirs, stdout=theirs)
    theirs.close()
    return Client(sock=ours), p


def test_agent_in_container(container):
    c, p = relay(container)
    w = c.hello()
    assert w.f["PID"] == 1
    m = c.spawn(["sh", "-c", "echo hello from $(id -un); exit 3"], env=["PATH=/usr/bin:/bin"])
    assert m.type == STARTED and m.id == 1
    out, ex, _ = c.collect(m.id)
    assert stream_bytes(out, STDOUT) == b"hello from root\n" and ex.f["EXIT_CODE"] == 3
    # as the image's user, HOME from its /etc/passwd
    m = c.spawn(["sh", "-c", 'echo "$(id -u) $HOME"'], user="sandbox")
    out, ex, _ = c.collect(m.id)
    assert stream_bytes(out, STDOUT) == b"1000 /home/sandbox\n"

    # orphans come back to PID 1 and are reaped: no <defunct> left
    m = c.spawn(["sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.1 &); done; true"])
    c.collect(m.id)

    def settled():
        r = _docker("exec", container, "ps", "-eo", "pid,stat,comm")
        assert r.returncode == 0, r.stderr
        live_sleeps = [l for l in r.stdout.splitlines() if l.split()[1:] and l.split()[-1] == "sleep"
                       and not l.split()[1].startswith("Z")]
        return not live_sleeps and r.stdout  # the orphans ended: reaped or zombies

    table = until(settled, what="the orphaned sleeps to end")
    assert "defunct" not in table and " Z" not in table, table

    rss = _docker("exec", container, "sh", "-c", "grep VmRSS /proc/1/status").stdout.strip()
    print(f"agent binary {os.path.getsize(agent_binary())} bytes, PID 1 {rss}")

    # a reconnect sees the same commands
    c.close()
    p.wait(timeout=10)
    c, p = relay(container)
    c.hello()
    c.send(LIST, fields=[("TAG", "l")])
    ids = []
    while True:
        s = c.recv()
        if s.type == LIST_END:
            break
        ids.append(s.id)
    assert ids == [1, 2, 3]
    c.spawn(["sleep", "100"], window=0)
    c.close()
    p.wait(timeout=10)

    # docker stop: SIGTERM to PID 1, which stops its commands and leaves
    t0 = time.time()
    r = _docker("stop", container)
    took = time.time() - t0
    assert r.returncode == 0, r.stderr
    assert took < 1.5, took
    st = docker.inspect(container)["State"]
    assert st["ExitCode"] == 0 and not st["Running"]
