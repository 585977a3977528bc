"""Slow and hostile clients, for the chaos suite and tools/bench: many
connections held open from one thread with non-blocking sockets, each of one
kind, driven by tick() once a second.

  head     sends a request head one byte per tick (never completes it)
  body     sends a whole head, then its JSON body one byte per tick
  silent   connects and sends nothing
  stream   sends a streaming exec (Accept: text/event-stream) of an endless
           command and never reads the answer (a small receive buffer, so
           the server's side fills soon)

Every socket is watched for what the server did to it: answered (the first
bytes it sent, e.g. a 408) and closed (EOF or reset)."""
import collections
import errno
import json
import resource
import socket
import time

KINDS = ("head", "body", "silent", "stream")


def raise_nofile(want):
    """Raises this process's soft limit on open files to want (or the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Conn:
    def __init__(self, kind, sock, pending):
        self.kind = kind
        self.sock = sock
        self.pending = pending  # bytes still to send, one per tick ("head", "body")
        self.got = b""  # what the server sent (kept up to 4 KiB; "stream" never reads)
        self.closed_at = None  # monotonic time the server's EOF or reset was seen
        self.opened_at = time.monotonic()
        self.sent_at = 0.0  # when the last trickled byte went out


class Hostile:
    """h = Hostile(server, sid, {"head": n, "body": n, "silent": n, "stream": n},
    command="yes"); h.open(); h.tick() every second; h.count_open();
    h.drain_streams(); h.close()."""

    def __init__(self, server, sid, counts, command="yes", exec_timeout=60):
        self.server = server
        self.sid = sid
        self.counts = dict(counts)
        self.conns = []
        self.due = collections.deque()  # trickling connections, the next due first
        self.polled_at = 0.0
        body = json.dumps({"command": "true"}).encode()
        self.head_bytes = (f"GET /api/sandboxes/{sid} HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a" * 200).encode()
        self.body_head = (f"POST /api/sandboxes/{sid}/execute HTTP/1.1\r\nHost: x\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {len(body) + 400}\r\n\r\n").encode()
        self.body_bytes = body + b" " * 400
        stream_body = json.dumps({"command": command, "timeout": exec_timeout}).encode()
        self.stream_req = (f"POST /api/sandboxes/{sid}/execute HTTP/1.1\r\nHost: x\r\n"
                           f"Accept: text/event-stream\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(stream_body)}\r\n\r\n").encode() + stream_body

    def _connect(self, kind):
        s = socket.socket()
        if kind == "stream":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no autotuning
        s.settimeout(10)
        s.connect((self.server.host, self.server.port))
        s.setblocking(False)
        pending = b""
        if kind == "head":
            pending = self.head_bytes
        elif kind == "body":
            self._send_all(s, self.body_head)
            pending = self.body_bytes
        elif kind == "stream":
            self._send_all(s, self.stream_req)
        c = Conn(kind, s, pending)
        self.conns.append(c)
        return c

    @staticmethod
    def _send_all(s, data):
        s.setblocking(True)
        s.sendall(data)
        s.setblocking(False)

    def open(self, kinds=KINDS):
        """Opens the connections of these kinds (all by default; a second
        call may open the others), the kinds interleaved; the first byte of
        each "head" and "body" one goes out at once, and their next ones
        spread evenly over each second (not all in one burst)."""
        first = len(self.conns)
        left = {k: self.counts.get(k, 0) for k in kinds}
        while any(left.values()):
            for kind in KINDS:
                if left.get(kind, 0) > 0:
                    left[kind] -= 1
                    self._connect(kind)
        now = time.monotonic()
        for i, c in enumerate(self.conns[first:]):
            if c.pending:
                try:
                    c.sock.send(c.pending[:1])
                    c.pending = c.pending[1:]
                except BlockingIOError:
                    pass
                c.sent_at = now - (i % 1000) / 1000  # the next ones spread over each second
                self.due.append(c)
        self.due = collections.deque(sorted(self.due, key=lambda c: c.sent_at))

    def tick(self, interval=1.0):
        """One byte more on each trickling connection whose last byte went
        out at least interval seconds ago; at most once per interval, notes
        what the server sent and which connections it closed. Cheap between
        two measured requests: only the connections due are touched."""
        now = time.monotonic()
        if now - self.polled_at >= interval:
            self.polled_at = now
            self.poll()
            self.due = collections.deque(sorted((c for c in self.conns if c.pending and c.closed_at is None),
                                                key=lambda c: c.sent_at))
        while self.due and now - self.due[0].sent_at >= interval:
            c = self.due.popleft()
            if c.closed_at is not None:
                continue
            try:
                if c.sock.send(c.pending[:1]) == 1:
                    c.pending = c.pending[1:]
                    # keep its phase in the second unless far behind
                    c.sent_at = c.sent_at + interval if now - c.sent_at < 2 * interval else now
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    c.closed_at = now
            if c.pending and c.closed_at is None:
                self.due.append(c)

    @staticmethod
    def _poll(c, now):
        """Reads what c holds now (its first 4 KiB kept in c.got); returns
        how many bytes. EOF or a reset set c.closed_at."""
        n = 0
        try:
            while True:
                b = c.sock.recv(1 << 20)
                if not b:
                    c.closed_at = now
                    return n
                n += len(b)
                if len(c.got) < 4096:
                    c.got += b[:4096 - len(c.got)]
        except BlockingIOError:
            return n
        except OSError:
            c.closed_at = now
            return n

    def poll(self):
        now = time.monotonic()
        for c in self.conns:
            if c.closed_at is None and c.kind != "stream":
                self._poll(c, now)

    def count_open(self, kind=None):
        return sum(1 for c in self.conns if c.closed_at is None and (kind is None or c.kind == kind))

    def of(self, kind):
        return [c for c in self.conns if c.kind == kind]

    def drain_streams(self, timeout=30.0):
        """Reads what each "stream" connection holds until the server's EOF:
        the server cut it (its idle timeout on a write that does not move).
        Returns {conn: bytes read}; those still open at the deadline keep
        closed_at None."""
        deadline = time.monotonic() + timeout
        streams = [c for c in self.of("stream") if c.closed_at is None]
        total = {}
        while streams and time.monotonic() < deadline:
            now = time.monotonic()
            for c in list(streams):
                total[c] = total.get(c, 0) + self._poll(c, now)
                if c.closed_at is not None:
                    streams.remove(c)
            time.sleep(0.05)
        return total

    def close(self):
        for c in self.conns:
            try:
                c.sock.close()
            except OSError:
                pass
        self.conns = []
