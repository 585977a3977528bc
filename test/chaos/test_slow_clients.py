"""Slow and hostile clients (issue 12): 2,000 connections that trickle a
request head, trickle a JSON body, send nothing, or ask for an endless
streaming exec and never read it, held against one server while fresh
requests are answered correctly; then each kind is cut by its documented
timeout (SANDBAR_HEADER_TIMEOUT, SANDBAR_BODY_TIMEOUT,
SANDBAR_IDLE_CONN_TIMEOUT), and the server is fine afterwards. Timings are
logged, not asserted: the p99 against an idle server is a row of tools/bench
(BENCH_ONLY=hostile)."""
import os
import re
import time

from commands_util import execute, make_sandbox
from harness.hostile import Hostile, raise_nofile
from harness.wait import until

HEADER_TIMEOUT = 15
BODY_TIMEOUT = 15
IDLE_TIMEOUT = 20
# 2,000; each never-read stream takes a few MiB before it stands still (the
# server's socket buffer), which an ASan build on a busy machine needs
# seconds for: 20 of them
COUNTS = {"head": 670, "body": 670, "silent": 640, "stream": 20}


def socket_count(srv):
    n = 0
    for fd in os.listdir(f"/proc/{srv.pid}/fd"):
        try:
            if os.readlink(f"/proc/{srv.pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def streams_ended(srv, mark):
    """The streamed execs the server has ended since mark (its log's lines
    for them; a fresh exec's answer is a few hundred bytes): bytes written."""
    return [int(m) for m in re.findall(r"POST /api/sandboxes/\S+/execute 200 (\d+)B", srv.log_text()[mark:])
            if int(m) > 100_000]


def fresh_requests(srv, sid, n):
    """n GETs of the sandbox and n small execs on a new keep-alive
    connection, each answer checked; returns the latencies in ms."""
    c = srv.client(timeout=30)
    lat = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            r = c.get(f"/api/sandboxes/{sid}")
            lat.append((time.perf_counter() - t0) * 1000)
            assert r.status == 200 and r.json["id"] == sid and r.json["status"] == "running", r
            t0 = time.perf_counter()
            r = execute(c, sid, ["echo", f"fresh-{i}"])
            lat.append((time.perf_counter() - t0) * 1000)
            assert r.status == 200 and r.json["stdout"] == f"fresh-{i}\n" and r.json["exit_code"] == 0, r
    finally:
        c.close()
    return lat


def wait_held(srv, want, h, timeout=HEADER_TIMEOUT - 5):
    """Until the server holds want sockets (accepted, not refused), well
    before the first of them could be cut. Give or take 3: its own sockets
    (PostgreSQL, Docker) come and go; what happens to each of ours is
    checked one by one afterwards."""
    want -= 3
    deadline = time.monotonic() + timeout
    while socket_count(srv) < want and time.monotonic() < deadline:
        h.tick()
        time.sleep(0.05)
    held = socket_count(srv)
    assert held >= want, f"the server holds {held} sockets of {want} after {timeout} s"


def p(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q / 100))]


def test_two_thousand_hostile_connections(server_factory):
    total = sum(COUNTS.values())
    assert total == 2000
    assert raise_nofile(total + 512) >= total + 512, "cannot open 2,000 sockets here"
    srv = server_factory(env={
        "SANDBAR_HEADER_TIMEOUT": f"{HEADER_TIMEOUT}s",
        "SANDBAR_BODY_TIMEOUT": f"{BODY_TIMEOUT}s",
        "SANDBAR_IDLE_CONN_TIMEOUT": f"{IDLE_TIMEOUT}s",
        "SANDBAR_MAX_CONNECTIONS": "4096",  # the default, said here: 2,000 hostile ones fit
    })
    c = srv.client(timeout=60)
    sid = make_sandbox(c)["id"]
    idle = fresh_requests(srv, sid, 50)
    base_sockets = socket_count(srv)

    # 16 MB each, far more than a stream holds in flight (about 2.5 MB):
    # bounded, since a command outlives its cut stream (a client that goes
    # away leaves its command running, writing into the agent's ring)
    h = Hostile(srv, sid, COUNTS, command="yes | head -c 16000000", exec_timeout=60)
    try:
        mark = srv.log_mark()
        t_open = time.monotonic()
        # the silent and trickling ones first, then the streams: on a busy
        # machine an ASan build takes seconds over the streams' first MiBs,
        # which would delay the accepts of the others
        h.open(("head", "body", "silent"))
        wait_held(srv, base_sockets + total - COUNTS["stream"], h)
        h.open(("stream",))
        opened = time.monotonic() - t_open
        # every connection is held by the server (accepted, not refused)
        wait_held(srv, base_sockets + total, h)
        # the streams are flowing, then stopped by the client not reading:
        # each one's command answered its head and started
        assert h.count_open() == total, {k: h.count_open(k) for k in COUNTS}

        # fresh requests while all 2,000 are open (well before any timeout)
        loaded = []
        end = t_open + HEADER_TIMEOUT - 2.5
        while time.monotonic() < end:
            h.tick()
            loaded += fresh_requests(srv, sid, 5)
        assert len(loaded) >= 10, f"only {len(loaded)} fresh requests in the window"
        assert h.count_open() == total, {k: h.count_open(k) for k in COUNTS}
        print(f"opened 2,000 in {opened:.1f}s; fresh p50/p99 ms idle {p(idle, 50):.2f}/{p(idle, 99):.2f}, "
              f"with 2,000 hostile {p(loaded, 50):.2f}/{p(loaded, 99):.2f} (n={len(loaded)})")

        # the trickling heads and bodies are cut by their timeouts, not before
        while time.monotonic() < t_open + opened + BODY_TIMEOUT + 10 and (h.count_open("head") or
                                                                          h.count_open("body")):
            h.tick()
            time.sleep(0.5)
        for kind in ("head", "body"):
            conns = h.of(kind)
            assert all(x.closed_at is not None for x in conns), f"{kind}: {h.count_open(kind)} still open"
            assert all(x.got.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in x.got for x in conns), \
                [x.got[:200] for x in conns if not x.got.startswith(b"HTTP/1.1 408 ")][:3]
            early = [x.closed_at - x.opened_at for x in conns if x.closed_at - x.opened_at < HEADER_TIMEOUT - 0.5]
            assert not early, f"{kind}: {len(early)} cut before their timeout, e.g. after {early[0]:.1f}s"
        # the silent ones, at the idle timeout, without an answer
        while time.monotonic() < t_open + opened + IDLE_TIMEOUT + 10 and h.count_open("silent"):
            h.poll()
            time.sleep(0.5)
        silent = h.of("silent")
        assert all(x.closed_at is not None and x.got == b"" for x in silent), \
            f"silent: {h.count_open('silent')} open, {sum(1 for x in silent if x.got)} answered"
        assert all(x.closed_at - x.opened_at > IDLE_TIMEOUT - 1 for x in silent)
        # the never-reading streams: their writes stood still for the idle
        # timeout, so the server closed them (seen from its side: reading
        # here first would let a stream move again); what was in flight is
        # bounded (the socket buffers and the stream's window), then EOF.
        # The idle timeout counts from a stream's last write that moved,
        # seconds after the open on a busy machine: a minute at most
        deadline = t_open + opened + IDLE_TIMEOUT + 60
        while len(streams_ended(srv, mark)) < COUNTS["stream"] and time.monotonic() < deadline:
            time.sleep(0.2)
        ended = streams_ended(srv, mark)
        assert len(ended) == COUNTS["stream"], f"{COUNTS['stream'] - len(ended)} streams not cut"
        assert max(ended) < 16 << 20, f"a stream that was never read got {max(ended)} bytes written"
        read = h.drain_streams(timeout=30)
        streams = h.of("stream")
        assert all(x.closed_at is not None for x in streams), f"{h.count_open('stream')} streams not cut"
        assert all(x.got.startswith(b"HTTP/1.1 200 ") and b"event: start" in x.got for x in streams)
        most = max(read.values())
        assert most < 16 << 20, f"a never-reading stream had {most} bytes in flight"
        print(f"streams cut; in flight when cut: at most {most / 1e6:.1f} MB")
    finally:
        h.close()

    # all gone from the server, which still answers
    until(lambda: socket_count(srv) <= base_sockets + 2, timeout=15, what="the server to close them all")
    fresh_requests(srv, sid, 5)
    r = c.get("/health")
    assert r.status == 200
    assert srv.alive()
    c.delete(f"/api/sandboxes/{sid}")
    c.close()
