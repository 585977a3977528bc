"""A small HTTP client for tests: well-formed requests through http.client,
and raw bytes over a socket for malformed-HTTP tests."""
import http.client
import json as jsonlib
import select
import socket
import time


class Response:
    """status, headers (case-insensitive lookups via .header()), body bytes,
    and .json (parsed when the body is JSON, else None). Unpacks as
    (status, headers, json-or-bytes)."""

    def __init__(self, status, headers, body, reason=""):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.json = None
        ctype = self.header("content-type") or ""
        if body and ("json" in ctype or body[:1] in (b"{", b"[")):
            try:
                self.json = jsonlib.loads(body)
            except ValueError:
                self.json = None

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def data(self):
        return self.json if self.json is not None else self.body

    def __iter__(self):
        return iter((self.status, dict((k.lower(), v) for k, v in self.headers), self.data))

    def __repr__(self):
        b = self.body[:300]
        return f"<Response {self.status} {self.reason} {b!r}{'...' if len(self.body) > 300 else ''}>"


class Client:
    """client.get('/health'); client.post('/api/sandboxes', json={...}).
    Keeps one connection alive. A request is sent once, never retried: a
    kept-alive connection the server has closed (its idle timeout, a
    restart) is seen before the request goes out and replaced by a new one;
    a connection lost after that raises, so a dropped request can not hide
    and a POST is never sent twice."""

    def __init__(self, host, port, timeout=30.0, token=None, headers=None):
        """headers: sent with every request (a Host for a proxy in front)."""
        self.host = host
        self.port = port
        self.timeout = timeout
        self.token = token
        self.headers = dict(headers or {})
        self._conn = None

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _closed_by_server(self):
        """True when the idle kept-alive connection has reached its end of
        file (or a reset) from the server. Bytes waiting on an idle
        connection are a server error and raise."""
        sock = self._conn.sock
        if sock is None:
            return False
        # poll, not select: a test holding thousands of sockets has fds past 1024
        p = select.poll()
        p.register(sock, select.POLLIN)
        if not p.poll(0):
            return False
        try:
            waiting = sock.recv(64, socket.MSG_PEEK)
        except (ConnectionResetError, BrokenPipeError):
            return True
        if waiting:
            raise AssertionError(f"bytes the server sent on an idle connection: {waiting!r}")
        return True

    def request(self, method, path, body=None, json=None, headers=None, timeout=None, fresh=False):
        hdrs = dict(self.headers)
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        if json is not None:
            body = jsonlib.dumps(json).encode()
            hdrs["Content-Type"] = "application/json"
        if isinstance(body, str):
            body = body.encode()
        hdrs.update(headers or {})
        if fresh or (self._conn is not None and self._closed_by_server()):
            self.close()
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        elif timeout:
            self._conn.timeout = timeout
            if self._conn.sock:
                self._conn.sock.settimeout(timeout)
        try:
            self._conn.request(method, path, body=body, headers=hdrs)
            r = self._conn.getresponse()
            data = r.read()
        except BaseException:
            self.close()
            raise
        resp = Response(r.status, r.getheaders(), data, r.reason)
        if r.will_close:
            self.close()
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def raw_request(host, port, data, timeout=10.0, read_until_close=True, shutdown_write=False):
    """Sends raw bytes and returns what came back (bytes) until the server
    closes the connection, a timeout, or, with read_until_close=False, the end
    of the first response head plus its Content-Length body. Reads while it
    sends: a server may answer early (413, 431) and close before the whole
    request went out; what it answered is still returned."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        buf = b""
        deadline = time.monotonic() + timeout
        view = memoryview(data or b"")
        sending = True
        while view and sending and time.monotonic() < deadline:
            r, w, _ = select.select([s], [s], [], max(0.0, deadline - time.monotonic()))
            if r:
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    return buf
                if not chunk:
                    return buf
                buf += chunk
                if not read_until_close and _complete(buf):
                    return buf
            if w:
                try:
                    n = s.send(view[:65536])
                except (ConnectionResetError, BrokenPipeError):
                    sending = False
                    break
                view = view[n:]
        if shutdown_write and sending:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            buf += chunk
            if not read_until_close and _complete(buf):
                break
        return buf


def _complete(buf):
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(rest) >= int(v.strip() or 0)
    return True


def parse_raw(buf):
    """Splits a raw response into (status, headers dict lower-cased, body).
    status is None when buf holds no HTTP status line."""
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2) if lines and lines[0] else []
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None, {}, buf
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return int(parts[1]), headers, body


def wait_port(host, port, timeout=10.0):
    """True once something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False
