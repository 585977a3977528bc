"""A small HTTP/1.1 app the preview tests run inside a sandbox (as a
service): keep-alive, chunked and Content-Length bodies both ways.
  GET  /hello          "hello from the app" (Content-Length)
  GET  /headers        the request's headers as JSON
  GET  /bytes?n=N      N bytes (i % 251), chunked
  POST /echo           the body back (Content-Length), request chunked or not
  POST /sha            sha256 hex of the body
  GET  /conn           this connection's number (keep-alive reuse shows)
  GET  /ws             a WebSocket echoing every message (Upgrade)"""
import base64
import struct
import hashlib
import http.server
import itertools
import json
import socket
import socketserver
import sys
import urllib.parse

COUNTER = itertools.count(1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # headers and body go out as two writes: no Nagle wait between them
        # (as node and most servers do)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_no = next(COUNTER)

    def log_message(self, *a):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def send(self, status, data, ctype="application/octet-stream"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        r = self.rfile
        while True:
            head = r.read(2)
            if len(head) < 2:
                return
            op, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", r.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", r.read(8))[0]
            mask = r.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
            if op == 8:
                self.wfile.write(b"\x88\x00")
                self.close_connection = True
                return
            size = (bytes([n]) if n < 126 else b"\x7e" + struct.pack(">H", n) if n < 65536
                    else b"\x7f" + struct.pack(">Q", n))
            self.wfile.write(bytes([0x80 | op]) + size + data)
            self.wfile.flush()

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket()
        elif u.path == "/hello":
            self.send(200, b"hello from the app", "text/plain")
        elif u.path == "/headers":
            self.send(200, json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode(),
                      "application/json")
        elif u.path == "/conn":
            self.send(200, str(self.conn_no).encode(), "text/plain")
        elif u.path == "/bytes":
            n = int(urllib.parse.parse_qs(u.query)["n"][0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = bytes(i % 251 for i in range(65536 - 65536 % 251))
            left = n
            while left:
                piece = block[:min(left, len(block))]
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                left -= len(piece)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send(404, b"no such page", "text/plain")

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "18")
        self.end_headers()

    def do_POST(self):
        data = self.body()
        if self.path == "/echo":
            self.send(200, data)
        elif self.path == "/sha":
            self.send(200, hashlib.sha256(data).hexdigest().encode(), "text/plain")
        else:
            self.send(404, b"no such page", "text/plain")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


Server(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
