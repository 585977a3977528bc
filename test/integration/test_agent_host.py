"""The real sandbar-agent binary on the host, in init mode on a temporary
socket, driven through the agent protocol (include/agent/protocol.h) by a
small client: spawn, exit codes, typed output, signals, stdin, env, cwd, PTY,
timeouts, the ring's gap, replay, flow control, lossless readers that hold
their command, several connections; services kept across a restart of the
agent, their ports probed, forgotten on request."""
import hashlib
import os
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from harness import paths
from harness.wait import until

# message types
HELLO, WELCOME, SPAWN, STARTED, SPAWN_FAILED, OUTPUT, EXITED = 1, 2, 3, 4, 5, 6, 7
STDIN, STDIN_CLOSE, SIGNAL, RESIZE, SUBSCRIBE, ACK, UNSUBSCRIBE = 8, 9, 10, 11, 12, 13, 14
FORGET, LIST, STATUS, LIST_END, ERROR, PING, PONG = 15, 16, 17, 18, 19, 20, 21
UNSERVICE, UNSERVICED = 31, 32
FEATURE_SERVICES = 4
FLAG_GAP = 1
# field tags
T = dict(VERSION=1, PID=2, STARTED_AT=3, TAG=4, ARGV=5, ENV=6, CWD=7, USER=8, PTY_ROWS=9, PTY_COLS=10,
         STDIN_OPEN=11, TIMEOUT_MS=12, GRACE_MS=13, RING_BYTES=14, WINDOW=15, CODE=16, MESSAGE=17,
         STREAM=18, OFFSET=19, DATA=20, EXIT_CODE=21, SIGNAL=22, TIMED_OUT=23, ENDED_AT=24, SIGNO=25,
         STATE=26, LOSSLESS=27, FEATURES=28, COUNT=42, SERVICE=46, PORT=47, READY=48)
NAMES = {v: k for k, v in T.items()}
INTS = {"VERSION", "PID", "STARTED_AT", "PTY_ROWS", "PTY_COLS", "STDIN_OPEN", "TIMEOUT_MS", "GRACE_MS",
        "RING_BYTES", "WINDOW", "CODE", "STREAM", "OFFSET", "EXIT_CODE", "SIGNAL", "TIMED_OUT", "ENDED_AT",
        "SIGNO", "STATE", "LOSSLESS", "FEATURES", "COUNT", "PORT", "READY"}
STDOUT, STDERR, PTY = 1, 2, 3


def agent_binary():
    if os.environ.get("SANDBAR_AGENT"):
        return os.path.abspath(os.environ["SANDBAR_AGENT"])
    sb = paths.sandbard_binary()
    return os.path.join(os.path.dirname(sb), "agent", "sandbar-agent")


def encode(mtype, cid=0, fields=(), flags=0):
    payload = b""
    for name, v in fields:
        if isinstance(v, int):
            v = struct.pack(">q", v)
        elif isinstance(v, str):
            v = v.encode()
        payload += struct.pack(">BI", T[name], len(v)) + v
    return struct.pack(">IBBHI", len(payload), mtype, flags, 0, cid) + payload


class Msg:
    def __init__(self, mtype, flags, cid, payload):
        self.type, self.flags, self.id = mtype, flags, cid
        self.f = {}
        self.data = b""
        p = 0
        while p < len(payload):
            tag, n = struct.unpack_from(">BI", payload, p)
            v = payload[p + 5:p + 5 + n]
            p += 5 + n
            name = NAMES.get(tag, tag)
            if name in INTS:
                v = struct.unpack(">q", v)[0]
            self.f.setdefault(name, v)
            if name == "DATA":
                self.data = v

    def __repr__(self):
        return f"Msg({self.type}, id={self.id}, flags={self.flags}, {self.f})"


class Client:
    def __init__(self, path=None, sock=None):
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
        self.s = sock
        self.s.settimeout(10)
        self.buf = b""

    def close(self):
        self.s.close()

    def send(self, mtype, cid=0, fields=(), flags=0):
        self.s.sendall(encode(mtype, cid, fields, flags))

    def recv(self, timeout=10):
        self.s.settimeout(timeout)
        while True:
            if len(self.buf) >= 12:
                n, mtype, flags, _z, cid = struct.unpack_from(">IBBHI", self.buf)
                if len(self.buf) >= 12 + n:
                    m = Msg(mtype, flags, cid, self.buf[12:12 + n])
                    self.buf = self.buf[12 + n:]
                    return m
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("agent closed the connection")
            self.buf += chunk

    def expect(self, mtype, timeout=10):
        m = self.recv(timeout)
        assert m.type == mtype, m
        return m

    def hello(self):
        self.send(HELLO, fields=[("VERSION", 1)])
        return self.expect(WELCOME)

    def spawn(self, argv, env=("PATH=/usr/bin:/bin",), window=1 << 20, tag="t", **kw):
        fields = [("TAG", tag)] + [("ARGV", a) for a in argv] + [("ENV", e) for e in env]
        if window:
            fields.append(("WINDOW", window))
        for k, v in kw.items():
            fields.append((k.upper(), v))
        self.send(SPAWN, fields=fields)
        m = self.recv()
        assert m.type in (STARTED, SPAWN_FAILED), m
        return m

    def collect(self, cid, ack=True, timeout=20):
        """Output of cid until EXITED: ([(stream, bytes)], exited, gaps)."""
        out, gaps = [], []
        deadline = time.time() + timeout
        while True:
            m = self.recv(max(0.1, deadline - time.time()))
            if m.id != cid:
                continue
            if m.type == OUTPUT:
                if m.flags & FLAG_GAP:
                    gaps.append(m.f["OFFSET"])
                    continue
                if out and out[-1][0] == m.f["STREAM"]:
                    out[-1] = (m.f["STREAM"], out[-1][1] + m.data)
                else:
                    out.append((m.f["STREAM"], m.data))
                if ack:
                    self.send(ACK, cid, [("TAG", m.f["TAG"]), ("OFFSET", m.f["OFFSET"] + len(m.data))])
            elif m.type == EXITED:
                return out, m, gaps
            elif m.type == ERROR:
                raise AssertionError(m)

    def run(self, argv, **kw):
        m = self.spawn(argv, **kw)
        assert m.type == STARTED, m
        out, ex, _ = self.collect(m.id)
        return m.id, out, ex


def stream_bytes(out, stream):
    return b"".join(d for s, d in out if s == stream)


def start_agent(binary, path, services):
    """The agent in init mode on socket path, keeping services in folder
    services; returns once it takes connections."""
    proc = subprocess.Popen([binary, "init"], env={"SANDBAR_AGENT_SOCKET": path, "PATH": "/usr/bin:/bin",
                                                   "SANDBAR_AGENT_SERVICES": services})
    # the path appears at bind(), a moment before listen(): wait until a
    # connection is taken
    for _ in range(500):
        try:
            Client(path).close()
            break
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.01)
    return proc


def stop_agent(proc):
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=5)
    assert proc.returncode == 0


@pytest.fixture
def agent():
    binary = agent_binary()
    assert os.path.exists(binary), f"no agent binary at {binary}: build it first"
    d = tempfile.mkdtemp(prefix="sbagent")
    path = os.path.join(d, "agent.sock")
    services = os.path.join(d, "services")

    class A:
        pass

    a = A()
    a.proc, a.path, a.binary, a.services = start_agent(binary, path, services), path, binary, services
    a.connect = lambda: Client(path)

    def restart():
        stop_agent(a.proc)
        os.unlink(path)
        a.proc = start_agent(binary, path, services)

    a.restart = restart
    yield a
    stop_agent(a.proc)
    os.unlink(path)
    for name in os.listdir(services) if os.path.isdir(services) else []:
        os.unlink(os.path.join(services, name))
    if os.path.isdir(services):
        os.rmdir(services)
    os.rmdir(d)


def pids_of(pattern):
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return r.stdout.split()


def test_hello_ping(agent):
    c = agent.connect()
    w = c.hello()
    assert w.f["VERSION"] == 1 and w.f["PID"] == agent.proc.pid and w.f["STARTED_AT"] > 0
    c.send(PING, fields=[("TAG", "p1")])
    assert c.expect(PONG).f["TAG"] == b"p1"


def test_exit_codes_and_ids(agent):
    c = agent.connect()
    c.hello()
    cid, out, ex = c.run(["echo", "hello"])
    assert cid == 1
    assert out == [(STDOUT, b"hello\n")]
    assert ex.f["EXIT_CODE"] == 0 and ex.f["SIGNAL"] == 0 and ex.f["TIMED_OUT"] == 0
    assert ex.f["OFFSET"] == 6 and ex.f["ENDED_AT"] >= ex.f["STARTED_AT"]
    cid, out, ex = c.run(["sh", "-c", "exit 3"])
    assert cid == 2 and out == [] and ex.f["EXIT_CODE"] == 3


def test_stdout_stderr_typed_and_ordered(agent):
    c = agent.connect()
    c.hello()
    _, out, ex = c.run(["sh", "-c", "echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; echo out2"])
    assert out == [(STDOUT, b"out1\n"), (STDERR, b"err1\n"), (STDOUT, b"out2\n")]
    assert ex.f["OFFSET"] == 15


def test_spawn_failed(agent):
    c = agent.connect()
    c.hello()
    m = c.spawn(["/no/such/binary"])
    assert m.type == SPAWN_FAILED and m.f["CODE"] == 2 and b"No such file" in m.f["MESSAGE"]
    assert m.f["TAG"] == b"t"
    m = c.spawn(["no-such-command-anywhere"])
    assert m.type == SPAWN_FAILED and m.f["CODE"] == 2
    m = c.spawn(["true"], cwd="/no/such/dir")
    assert m.type == SPAWN_FAILED and m.f["CODE"] == 2 and b"cwd" in m.f["MESSAGE"]
    m = c.spawn(["true"], user="no-such-user")
    assert m.type == SPAWN_FAILED


def test_signal_kill(agent):
    c = agent.connect()
    c.hello()
    m = c.spawn(["sleep", "100"])
    c.send(SIGNAL, m.id, [("SIGNO", 9)])
    _, ex, _ = c.collect(m.id)
    assert ex.f["EXIT_CODE"] == -1 and ex.f["SIGNAL"] == 9


def test_stdin_echo_and_close(agent):
    c = agent.connect()
    c.hello()
    m = c.spawn(["cat"], stdin_open=1)
    c.send(STDIN, m.id, [("DATA", b"hello ")])
    c.send(STDIN, m.id, [("DATA", b"world\x00\xff")])
    c.send(STDIN_CLOSE, m.id)
    out, ex, _ = c.collect(m.id)
    assert stream_bytes(out, STDOUT) == b"hello world\x00\xff" and ex.f["EXIT_CODE"] == 0
    # without STDIN_OPEN stdin is /dev/null: cat ends at once
    _, out, ex = c.run(["cat"])
    assert out == [] and ex.f["EXIT_CODE"] == 0


def test_env_not_inherited_and_cwd(agent):
    c = agent.connect()
    c.hello()
    _, out, _ = c.run(["env"], env=["A=1", "B=two words"])
    assert stream_bytes(out, STDOUT) == b"A=1\nB=two words\n"
    d = tempfile.mkdtemp()
    _, out, _ = c.run(["pwd"], cwd=d)
    assert stream_bytes(out, STDOUT) == d.encode() + b"\n"
    os.rmdir(d)
    _, out, _ = c.run(["sh", "-c", 'echo "$HOME"'], env=["PATH=/usr/bin:/bin"], user="root")
    assert stream_bytes(out, STDOUT) == b"/root\n"


def test_pty_size_and_resize(agent):
    c = agent.connect()
    c.hello()
    _, out, ex = c.run(["stty", "size"], pty_rows=30, pty_cols=100)
    assert out == [(PTY, b"30 100\r\n")] and ex.f["EXIT_CODE"] == 0
    m = c.spawn(["sh", "-c", "stty size; read x; stty size; tty"], pty_rows=24, pty_cols=80)
    first = c.expect(OUTPUT)  # the first size is out: the shell went on to its read
    assert first.id == m.id and first.data == b"24 80\r\n", first
    c.send(RESIZE, m.id, [("PTY_ROWS", 50), ("PTY_COLS", 132)])
    c.send(STDIN, m.id, [("DATA", b"go\n")])
    out, ex, _ = c.collect(m.id)
    text = stream_bytes(out, PTY)
    assert b"24 80" not in text and b"/dev/pts/" in text.partition(b"50 132\r\n")[2], text


def test_timeout_kills_the_tree(agent):
    c = agent.connect()
    c.hello()
    marker = "sleep 100.%d" % os.getpid()
    t0 = time.time()
    m = c.spawn(["sh", "-c", f"{marker.replace('sleep ', 'sleep ')} & sleep 101 & wait"], timeout_ms=300,
                grace_ms=500)
    _, ex, _ = c.collect(m.id)
    assert time.time() - t0 < 3
    assert ex.f["TIMED_OUT"] == 1 and ex.f["EXIT_CODE"] == -1 and ex.f["SIGNAL"] == 15
    until(lambda: pids_of(marker) == [], timeout=5, what="the timed-out tree to be gone")


def test_background_grandchild_does_not_hold_exit(agent):
    c = agent.connect()
    c.hello()
    marker = "sleep 50.%d" % os.getpid()
    t0 = time.time()
    m = c.spawn(["sh", "-c", f"echo hi; {marker} &"])
    out, ex, _ = c.collect(m.id)
    assert time.time() - t0 < 2 and out == [(STDOUT, b"hi\n")] and ex.f["EXIT_CODE"] == 0
    # the group still has a member: SIGNAL reaches it after the leader exited
    survivor = pids_of(marker)
    assert len(survivor) == 1 and os.getpgid(int(survivor[0])) == m.f["PID"], survivor
    c.send(SIGNAL, m.id, [("SIGNO", 9)])
    c.send(PING, fields=[("TAG", "x")])
    assert c.expect(PONG).f["TAG"] == b"x"
    until(lambda: pids_of(marker) == [], timeout=5, what="the survivor to die of the SIGNAL")


def test_ring_gap_and_replay(agent):
    c = agent.connect()
    c.hello()
    # 200 KiB through a 64 KiB ring, nobody reading until it ended
    m = c.spawn(["head", "-c", "204800", "/dev/zero"], window=0, ring_bytes=65536)
    until(lambda: not ps_alive(m.f["PID"]), timeout=5, what="head to end")
    c.send(SUBSCRIBE, m.id, [("TAG", "late"), ("OFFSET", 0), ("WINDOW", 1 << 20)])
    out, ex, gaps = c.collect(m.id)
    assert gaps == [204800 - 65536]
    assert stream_bytes(out, STDOUT) == b"\0" * 65536 and ex.f["OFFSET"] == 204800
    # replay from an offset after exit
    c.send(SUBSCRIBE, m.id, [("TAG", "again"), ("OFFSET", 204800 - 10), ("WINDOW", 100)])
    out, ex, gaps = c.collect(m.id)
    assert gaps == [] and out == [(STDOUT, b"\0" * 10)]


def test_replay_after_exit(agent):
    c = agent.connect()
    c.hello()
    cid, out, _ = c.run(["sh", "-c", "echo abc; echo def >&2"])
    c.send(SUBSCRIBE, cid, [("TAG", "r"), ("OFFSET", 2), ("WINDOW", 1000)])
    out, ex, _ = c.collect(cid)
    assert out == [(STDOUT, b"c\n"), (STDERR, b"def\n")] and ex.f["OFFSET"] == 8
    c.send(SUBSCRIBE, cid, [("TAG", "r"), ("OFFSET", 9), ("WINDOW", 1000)])
    assert c.expect(ERROR).f["CODE"] == 34  # ERANGE


def test_window_flow_control(agent):
    c = agent.connect()
    c.hello()
    m = c.spawn(["head", "-c", "100000", "/dev/zero"], window=4096)
    got = 0
    while got < 4096:
        o = c.expect(OUTPUT)
        assert o.f["OFFSET"] == got
        got += len(o.data)
    assert got == 4096
    with pytest.raises(socket.timeout):
        c.recv(timeout=0.5)  # stopped at the window
    c.send(ACK, m.id, [("TAG", "t"), ("OFFSET", 1000)])
    o = c.expect(OUTPUT)
    assert o.f["OFFSET"] == 4096 and len(o.data) == 1000
    with pytest.raises(socket.timeout):
        c.recv(timeout=0.3)
    c.send(ACK, m.id, [("TAG", "t"), ("OFFSET", 5096)])
    out, ex, _ = c.collect(m.id)
    assert ex.f["OFFSET"] == 100000 and sum(len(d) for _, d in out) == 100000 - 5096


def test_two_connections_and_list_after_reconnect(agent):
    c1 = agent.connect()
    c1.hello()
    c2 = agent.connect()
    c2.hello()
    m = c1.spawn(["sh", "-c", "read x; echo got $x"], stdin_open=1)
    c2.send(SUBSCRIBE, m.id, [("TAG", "two"), ("OFFSET", 0), ("WINDOW", 1000)])
    c1.close()  # the command belongs to the agent, not to c1
    c2.send(STDIN, m.id, [("DATA", b"it\n")])
    out, ex, _ = c2.collect(m.id)
    assert out == [(STDOUT, b"got it\n")] and ex.f["EXIT_CODE"] == 0
    r = c2.spawn(["sleep", "100"], window=0)
    c2.close()
    c3 = agent.connect()
    c3.hello()
    c3.send(LIST, fields=[("TAG", "l")])
    sts = []
    while True:
        s = c3.recv()
        if s.type == LIST_END:
            break
        assert s.type == STATUS and s.f["TAG"] == b"l"
        sts.append(s)
    byid = {s.id: s for s in sts}
    assert byid[m.id].f["STATE"] == 2 and byid[m.id].f["EXIT_CODE"] == 0 and byid[m.id].f["OFFSET"] == 7
    assert byid[r.id].f["STATE"] == 1 and byid[r.id].f["PID"] == r.f["PID"]
    # FORGET: running refused, exited dropped
    c3.send(FORGET, r.id)
    assert c3.expect(ERROR).f["CODE"] == 16
    c3.send(FORGET, m.id)
    c3.send(SUBSCRIBE, m.id, [("TAG", "gone"), ("OFFSET", 0)])
    e = c3.expect(ERROR)
    assert e.id == m.id and e.f["CODE"] == 2
    c3.send(SIGNAL, r.id, [("SIGNO", 9)])
    c3.send(SUBSCRIBE, r.id, [("TAG", "k"), ("OFFSET", 0)])
    _, ex, _ = c3.collect(r.id)
    assert ex.f["SIGNAL"] == 9


def test_bad_requests(agent):
    c = agent.connect()
    c.hello()
    c.send(SIGNAL, 999, [("SIGNO", 9)])
    e = c.expect(ERROR)
    assert e.id == 999 and e.f["CODE"] == 2
    c.send(SPAWN, fields=[("TAG", "x")])  # no ARGV
    assert c.expect(ERROR).f["CODE"] == 22
    c.s.sendall(struct.pack(">IBBHI", 3, PING, 0, 0, 0) + b"\x04\x00\x00")  # field runs past the payload
    assert c.expect(ERROR).f["CODE"] == 22
    c.send(WELCOME)  # not a request
    assert c.expect(ERROR).f["CODE"] == 22
    c.s.sendall(struct.pack(">IBBHI", 0, PING, 0, 1, 0))  # reserved bits: the connection goes
    with pytest.raises(EOFError):
        c.recv()


def test_sigterm_stops_commands_quickly(agent):
    c = agent.connect()
    c.hello()
    c.spawn(["sleep", "100"], window=0)
    marker = "sleep 101.%d" % os.getpid()
    c.spawn(["sh", "-c", f"trap '' TERM; {marker}"], window=0)
    until(lambda: pids_of(marker), timeout=5, what="the shell to ignore TERM and start its sleep")
    t0 = time.time()
    agent.proc.terminate()
    assert agent.proc.wait(timeout=5) == 0
    assert time.time() - t0 < 3


def test_main_child_status(agent):
    r = subprocess.run([agent.binary, "init", "--", "sh", "-c", "echo main; exit 7"], capture_output=True,
                       env={"SANDBAR_AGENT_SOCKET": agent.path + ".2", "PATH": "/usr/bin:/bin"}, timeout=10)
    assert r.returncode == 7 and r.stdout == b"main\n"
    os.unlink(agent.path + ".2")


def test_relay(agent):
    p = subprocess.Popen([agent.binary, "relay"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env={"SANDBAR_AGENT_SOCKET": agent.path})
    p.stdin.write(encode(HELLO, fields=[("VERSION", 1)]) + encode(PING, fields=[("TAG", "r")]))
    p.stdin.close()
    out = p.stdout.read()
    assert p.wait(timeout=5) == 0
    assert out[4] == WELCOME and PONG in out[12 + struct.unpack(">I", out[:4])[0]:][4:5]
    r = subprocess.run([agent.binary, "relay"], env={"SANDBAR_AGENT_SOCKET": agent.path + ".none"},
                       capture_output=True, timeout=5)
    assert r.returncode != 0 and b"cannot connect" in r.stderr


FLOOD = "head -c %d /dev/zero | tr '\\0' x"


def ps_alive(pid):
    r = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return r.stdout.strip() != "" and not r.stdout.strip().startswith("Z")


def read_window(c, cid, window):
    """OUTPUT up to the window, no ACK: the bytes, and no gap on the way."""
    data = b""
    while len(data) < window:
        m = c.expect(OUTPUT)
        assert m.id == cid and not m.flags & FLAG_GAP and m.f["OFFSET"] == len(data), m
        data += m.data
    return data


@pytest.mark.parametrize("pty", [False, True])
def test_lossless_reader_holds_the_producer(agent, pty):
    c = agent.connect()
    c.hello()
    total, ring, window = 3_000_000, 65536, 16384
    kw = dict(pty_rows=24, pty_cols=80) if pty else {}
    m = c.spawn(["sh", "-c", FLOOD % total], window=window, ring_bytes=ring, lossless=1, **kw)
    head = read_window(c, m.id, window)
    with pytest.raises(socket.timeout):
        c.recv(timeout=0.7)  # no more output, no EXITED: the producer is blocked on its pipe
    assert ps_alive(m.f["PID"])
    c.send(ACK, m.id, [("TAG", "t"), ("OFFSET", window)])
    out, ex, gaps = c.collect(m.id, timeout=60)
    assert gaps == [] and ex.f["EXIT_CODE"] == 0 and ex.f["OFFSET"] == total
    body = head + b"".join(d for _, d in out)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(b"x" * total).hexdigest()
    assert not ps_alive(m.f["PID"])


def test_lossless_hold_released_by_disconnect_and_unsubscribe(agent):
    for how in ("close", "unsubscribe"):
        c = agent.connect()
        c.hello()
        m = c.spawn(["sh", "-c", FLOOD % 2_000_000], window=4096, ring_bytes=65536, lossless=1)
        read_window(c, m.id, 4096)
        time.sleep(0.5)
        assert ps_alive(m.f["PID"])
        if how == "close":
            c.close()
            c = agent.connect()
            c.hello()
        else:
            c.send(UNSUBSCRIBE, m.id, [("TAG", "t")])
        # nobody holds it now: it runs to its end, the ring keeps the newest bytes
        deadline = time.time() + 10
        while ps_alive(m.f["PID"]) and time.time() < deadline:
            time.sleep(0.05)
        assert not ps_alive(m.f["PID"])
        c.send(SUBSCRIBE, m.id, [("TAG", "late"), ("OFFSET", 0), ("WINDOW", 1 << 20)])
        out, ex, gaps = c.collect(m.id)
        assert gaps == [2_000_000 - 65536] and ex.f["OFFSET"] == 2_000_000
        c.close()


def test_lossless_timeout_while_paused(agent):
    c = agent.connect()
    c.hello()
    t0 = time.time()
    m = c.spawn(["sh", "-c", FLOOD % 50_000_000], window=4096, ring_bytes=65536, lossless=1, timeout_ms=500,
                grace_ms=300)
    read_window(c, m.id, 4096)
    deadline = time.time() + 5
    while ps_alive(m.f["PID"]) and time.time() < deadline:
        time.sleep(0.05)
    assert not ps_alive(m.f["PID"]) and time.time() - t0 < 3  # killed while held
    with pytest.raises(socket.timeout):
        c.recv(timeout=0.3)  # EXITED waits for the bytes still held
    c.send(ACK, m.id, [("TAG", "t"), ("OFFSET", 4096)])
    out, ex, gaps = c.collect(m.id)
    assert ex.f["TIMED_OUT"] == 1 and ex.f["SIGNAL"] == 15 and gaps == []
    assert 4096 + sum(len(d) for _, d in out) == ex.f["OFFSET"] < 50_000_000
    assert set(b"".join(d for _, d in out)) == {ord("x")}


def free_port():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def list_all(c):
    c.send(LIST, fields=[("TAG", "l")])
    sts = []
    while True:
        s = c.recv()
        if s.type == LIST_END:
            return sts
        assert s.type == STATUS, s
        sts.append(s)


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def test_service_kept_started_again_and_forgotten(agent):
    """A service with a port: kept in the services folder, READY once its port
    takes connections, started again (same command line, env and folder) by
    the next agent, forgotten by UNSERVICE (SIGTERM to its group, not started
    again)."""
    c = agent.connect()
    assert c.hello().f["FEATURES"] & FEATURE_SERVICES
    port = free_port()
    work = tempfile.mkdtemp(prefix="sbsvcwork")
    with open(os.path.join(work, "index.html"), "w") as f:
        f.write("hello")
    try:
        m = c.spawn(["sh", "-c", "echo $GREETING >&2; exec python3 -m http.server %d" % port],
                    env=("PATH=/usr/bin:/bin", "GREETING=hi"), cwd=work, service="svc-1", port=port, window=0)
        assert m.type == STARTED, m
        assert os.listdir(agent.services) == ["svc-1"]
        assert os.stat(os.path.join(agent.services, "svc-1")).st_mode & 0o777 == 0o600

        def ready(cl):
            sts = [s for s in list_all(cl) if s.f.get("SERVICE") == b"svc-1"]
            assert len(sts) == 1 and sts[0].f["PORT"] == port and sts[0].f["STATE"] == 1, sts
            return sts[0] if sts[0].f["READY"] == 1 else None

        until(lambda: ready(c), timeout=20, what="the service's port to be ready")
        assert answers(port)
        # a second one of the same service: refused
        m2 = c.spawn(["true"], service="svc-1", window=0)
        assert m2.type == SPAWN_FAILED and m2.f["CODE"] == 17  # EEXIST
        c.close()

        agent.restart()  # as a stop and start of the container
        c = agent.connect()
        c.hello()
        st = until(lambda: ready(c), timeout=20, what="the service ready again after the restart")
        assert answers(port)
        c.send(SUBSCRIBE, st.id, [("TAG", "o"), ("OFFSET", 0), ("WINDOW", 1 << 20)])
        m = c.expect(OUTPUT)
        assert m.f["STREAM"] == STDERR and m.data.startswith(b"hi\n")  # the same env

        c.send(UNSERVICE, fields=[("TAG", "u"), ("SERVICE", "svc-1")])
        while True:
            u = c.recv()
            if u.type == UNSERVICED:
                break
        assert u.f["TAG"] == b"u" and u.f["COUNT"] == 1 and u.f["PID"] == st.f["PID"]
        assert os.listdir(agent.services) == []
        _, ex, _ = c.collect(st.id)
        assert ex.f["SIGNAL"] == 15
        assert not answers(port)
        c.send(UNSERVICE, fields=[("TAG", "u2"), ("SERVICE", "svc-1")])  # again: nothing to do
        u = c.expect(UNSERVICED)
        assert u.f["COUNT"] == 0 and u.f["PID"] == 0
        c.close()

        agent.restart()
        c = agent.connect()
        c.hello()
        assert list_all(c) == []
        c.send(UNSERVICE, fields=[("TAG", "u3"), ("SERVICE", "../x")])
        assert c.expect(ERROR).f["CODE"] == 22
    finally:
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)
