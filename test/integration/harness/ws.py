"""A small WebSocket client (RFC 6455) over a plain socket, for the terminal
and JSON-RPC tests: handshake, masked frames out, whole messages in."""
import base64
import hashlib
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Closed(Exception):
    pass


class WebSocket:
    def __init__(self, host, port, path, headers=None, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16))
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + key.decode(), "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Closed(f"closed during the handshake: {self.buf!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.head = head.decode("latin-1")
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
            assert f"Sec-WebSocket-Accept: {want}" in self.head, self.head
        self.close_code = None

    def send(self, data, binary=None):
        if isinstance(data, str):
            data, opcode = data.encode(), 1
        else:
            opcode = 2
        if binary is not None:
            opcode = 2 if binary else 1
        self._frame(opcode, data)

    def send_fragmented(self, data, size=4096, binary=False):
        """One message as gorilla/websocket writes a long one: a first frame
        (FIN=0) of size bytes, continuation frames, the last with FIN=1."""
        if isinstance(data, str):
            data = data.encode()
        if len(data) <= size:
            self._frame(2 if binary else 1, data)
            return
        parts = [data[i:i + size] for i in range(0, len(data), size)]
        for i, part in enumerate(parts):
            self._frame(0 if i else (2 if binary else 1), part, fin=i == len(parts) - 1)

    def _frame(self, opcode, data, fin=True):
        mask = os.urandom(4)
        n = len(data)
        b0 = (0x80 if fin else 0) | opcode
        if n < 126:
            head = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", b0, 0x80 | 127, n)
        # XOR as one big integer: fast enough for megabytes
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""
        self.sock.sendall(head + mask + masked)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout=10.0):
        """(binary, payload) of the next whole message; raises Closed after a close frame."""
        self.sock.settimeout(timeout)
        parts, first_op = [], None
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            if op == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                try:
                    self._frame(8, payload[:2])
                except OSError:
                    pass
                raise Closed(f"close frame {self.close_code} {payload[2:]!r}")
            if op == 9:
                self._frame(10, payload)
                continue
            if op == 10:
                continue
            if first_op is None:
                first_op = op
            parts.append(payload)
            if b0 & 0x80:
                return first_op == 2, b"".join(parts)

    def recv_until(self, pred, timeout=10.0):
        """Messages until pred(binary, payload) is true; returns them all."""
        got, deadline = [], time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message in {timeout}s; got {got[-5:]!r}")
            m = self.recv(timeout=left)
            got.append(m)
            if pred(*m):
                return got

    def close(self, code=1000):
        try:
            self._frame(8, struct.pack("!H", code))
        except OSError:
            pass
        self.sock.close()
