"""A JSON-RPC 2.0 client over the Hermes WebSocket that writes what the Vtrix
sandbox-go SDK writes: masked text frames, messages over 4096 bytes
fragmented in 4096-byte frames, integer ids from 1, params as an object with
sorted keys (Go's encoding/json); it checks every frame it reads against the
spec's rules (§8) and sorts them by call."""
import json
import time

from harness.ws import Closed, WebSocket  # noqa: F401 (Closed re-exported)

FRAGMENT = 4096


class RpcError(Exception):
    def __init__(self, code, message, notifications):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.notifications = code, message, notifications


class Rpc:
    def __init__(self, server, sandbox_id, path=None, headers=None):
        self.ws = WebSocket(server.host, server.port, path or f"/api/v1/sandboxes/{sandbox_id}/connect",
                            headers=headers)
        self.status = self.ws.status
        self.next_id = 1
        self.notes = {}  # id -> [notification, ...]
        self.done = {}  # id -> response
        self.order = []  # ids in the order their responses came

    def send(self, method, params):
        """Sends a request; returns its id."""
        rid = self.next_id
        self.next_id += 1
        # the request struct's fields in declaration order, params a map: sorted keys
        msg = json.dumps({"jsonrpc": "2.0", "method": method, "params": dict(sorted(params.items())), "id": rid},
                         separators=(",", ":"), ensure_ascii=False)
        self.ws.send_fragmented(msg.encode(), FRAGMENT)
        return rid

    def send_raw(self, data, binary=False):
        self.ws.send_fragmented(data if isinstance(data, bytes) else data.encode(), FRAGMENT, binary=binary)

    def read_one(self, timeout=30.0):
        binary, payload = self.ws.recv(timeout=timeout)
        assert not binary, "the server sends text frames"
        msg = json.loads(payload)
        assert isinstance(msg, dict) and msg.get("jsonrpc") == "2.0", msg
        if "method" in msg:
            # a notification: never an id of its own, params.id the call's (a number)
            assert "id" not in msg and "result" not in msg and "error" not in msg, msg
            cid = msg["params"]["id"]
            assert isinstance(cid, int) and not isinstance(cid, bool), msg
            assert cid not in self.done, f"notification after the response of {cid}: {msg}"
            self.notes.setdefault(cid, []).append(msg)
        else:
            assert ("result" in msg) != ("error" in msg), msg
            rid = msg["id"]
            if rid is not None:
                assert isinstance(rid, int) and not isinstance(rid, bool), msg
                assert rid not in self.done, f"two responses for {rid}"
            self.done[rid] = msg
            self.order.append(rid)
        return msg

    def wait(self, rid, timeout=60.0):
        """(notifications, response) of call rid, reading until it is answered."""
        deadline = time.monotonic() + timeout
        while rid not in self.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no response to {rid} in {timeout}s")
            self.read_one(timeout=left)
        return self.notes.pop(rid, []), self.done[rid]

    def call(self, method, params, timeout=60.0):
        """The result and the notifications of one call; RpcError on an error response."""
        notes, resp = self.wait(self.send(method, params), timeout)
        if "error" in resp:
            raise RpcError(resp["error"]["code"], resp["error"]["message"], notes)
        return resp["result"], notes

    def close(self):
        """What the SDK's Close does: drop the TCP connection, no close frame."""
        self.ws.sock.close()
