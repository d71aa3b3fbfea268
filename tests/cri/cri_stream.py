#!/usr/bin/python3
"""A client for the CRI streaming server (the URLs Exec and Attach return), for kata-cpp's tests.

The kubelet talks SPDY or WebSocket to the URL the runtime's Exec/Attach answered with. This is
the WebSocket side (RFC 6455, written here on the standard library), with the
`v4.channel.k8s.io` subprotocol: every binary message starts with one byte naming the channel
(0 stdin, 1 stdout, 2 stderr, 3 status, 4 terminal resize) and the status channel carries a
JSON metav1.Status when the command ends ({"status": "Success"}, or "Failure" with reason
"NonZeroExitCode" and the exit code among details.causes).

    with StreamSession(url) as s:
        s.send_stdin(b"hello\\n")
        out = s.run_until_status(timeout=30)   # {"stdout": b, "stderr": b, "status": {...}}
        exit_code(out["status"])

PortForward URLs speak the same subprotocol with other channels: for the i-th `?port=N` of the
URL, channel 2i carries the connection's bytes both ways and 2i+1 the server's error text; the
server opens each channel with the port number as two little-endian bytes. port_forward() sends
one request through it and returns what came back:

    got = port_forward(url, 8080, b"GET / HTTP/1.0\\r\\n\\r\\n")   # {"data": b, "error": b}
"""

import base64
import json
import os
import socket
import struct
import time
import urllib.parse

PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS, RESIZE = range(5)


class StreamError(Exception):
    pass


class StreamSession:
    def __init__(self, url, timeout=30.0, protocol=PROTOCOL):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            raise StreamError("%s: only http:// streaming URLs are supported here" % url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: %s\r\n\r\n" % (path, u.netloc, key, protocol))
        self.sock.sendall(req.encode())
        head = self._read_until(b"\r\n\r\n").decode(errors="replace")
        status_line = head.split("\r\n", 1)[0]
        if " 101 " not in status_line + " ":
            raise StreamError("%s: no WebSocket upgrade: %s" % (url, head.strip()))
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in head.split("\r\n")[1:] if line)}
        if headers.get("sec-websocket-protocol") != protocol:
            raise StreamError("%s: server chose subprotocol %r, not %s" % (
                url, headers.get("sec-websocket-protocol"), protocol))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self._send_frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()

    # ---- RFC 6455 framing ----

    def _read_until(self, marker):
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise StreamError("connection closed during the handshake")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _send_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _recv_message(self):
        """The next data message (bytes), answering pings; None when the server closed."""
        data = b""
        while True:
            try:
                b0, b1 = self._read_exact(2)
            except EOFError:
                return None
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read_exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read_exact(8))[0]
            mask = self._read_exact(4) if b1 & 0x80 else None
            payload = self._read_exact(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            data += payload
            if b0 & 0x80:
                return data

    # ---- channels ----

    def send_stdin(self, data):
        self._send_frame(0x2, bytes([STDIN]) + data)

    def resize(self, width, height):
        self._send_frame(0x2, bytes([RESIZE]) + json.dumps(
            {"Width": width, "Height": height}).encode())

    def read(self, timeout=30.0, until=None):
        """Reads messages until the status channel answers, the server closes, `until(out)`
        is true or `timeout` passes. Returns {"stdout", "stderr", "status", "closed"}."""
        out = {"stdout": b"", "stderr": b"", "status": None, "closed": False}
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamError("no status after %.0fs (stdout %r, stderr %r)" % (
                    timeout, out["stdout"], out["stderr"]))
            self.sock.settimeout(left)
            try:
                msg = self._recv_message()
            except socket.timeout:
                continue
            if msg is None:
                out["closed"] = True
                return out
            if not msg:
                continue
            ch, body = msg[0], msg[1:]
            if ch == STDOUT:
                out["stdout"] += body
            elif ch == STDERR:
                out["stderr"] += body
            elif ch == STATUS and body:
                out["status"] = json.loads(body)
                return out
            if until and until(out):
                return out


def exit_code(status):
    """The exit code a v4 status message reports (0 for Success); ValueError otherwise."""
    if status is None:
        raise ValueError("no status message")
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in status.get("details", {}).get("causes", []):
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
    raise ValueError("status without an exit code: %r" % status)


def port_forward(url, port, request, timeout=30.0):
    """Sends `request` to `port` through a PortForward streaming URL and reads until the server
    closes the stream (the pod's side closed the connection). Returns {"data": bytes the port
    answered, "error": the server's error text}, without the two port-number bytes that open
    each channel; StreamError if a channel opens with another port."""
    sep = "&" if "?" in url else "?"
    got = {0: b"", 1: b""}
    opened = set()
    with StreamSession(url + sep + "port=%d" % port, timeout=timeout) as s:
        s._send_frame(0x2, bytes([0]) + request)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamError("port %d: no end of stream after %.0fs (data %r, error %r)" % (
                    port, timeout, got[0][:200], got[1]))
            s.sock.settimeout(left)
            try:
                msg = s._recv_message()
            except socket.timeout:
                continue
            if msg is None:
                break
            if not msg or msg[0] not in got:
                continue
            ch, body = msg[0], msg[1:]
            if ch not in opened:
                if len(body) < 2 or struct.unpack("<H", body[:2])[0] != port:
                    raise StreamError("channel %d opened with %r, not port %d" % (ch, body, port))
                opened.add(ch)
                body = body[2:]
            got[ch] += body
    return {"data": got[0], "error": got[1]}
