#!/usr/bin/python3
"""A small CRI v1 client for kata-cpp's tests: a library and a command line.

It speaks gRPC to containerd's `cri` plugin over its unix socket. The message classes come
from tests/cri/proto/api.proto, compiled with `protoc --python_out` into a build directory the
first time they are needed (nothing generated is kept in the source tree). Calls go through
grpc's generic `unary_unary`, so no grpc code generator plugin is needed.

Library:
    from cri_client import CriClient
    cri = CriClient("/path/containerd.sock")
    cri.Version().runtime_api_version
    pod = cri.RunPodSandbox(config={...}, runtime_handler="runc").pod_sandbox_id
    cri.call("ExecSync", {"container_id": cid, "cmd": ["echo", "hi"]})

Every RuntimeService/ImageService method in api.proto is a method of CriClient; it takes the
request's fields as keyword arguments (plain dicts/lists for nested messages, protobuf JSON
names or field names) or a ready request message, and returns the response message; the
keyword `_timeout` sets the call's deadline in seconds. A failed call raises CriError.

Command line (/usr/bin/python3, with Debian's python3-grpcio and python3-protobuf):
    cri_client.py --socket SOCK METHOD [REQUEST]   REQUEST: JSON text, @FILE, or - (stdin);
                                                   prints the response as JSON
    cri_client.py --socket SOCK methods            lists the methods
    cri_client.py --socket SOCK cleanup            stops and removes every pod and container
    cri_client.py --socket SOCK wait [SECONDS]     waits until Version answers
"""

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import grpc
from google.protobuf import json_format, message

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "proto", "api.proto")
SERVICES = ("RuntimeService", "ImageService")
PACKAGE = "runtime.v1"

_api = None


def load_api(build_dir=None):
    """Compiles api.proto (when the build dir has no up-to-date api_pb2.py) and imports it."""
    global _api
    if _api is not None:
        return _api
    build_dir = build_dir or os.environ.get("CRI_PROTO_BUILD_DIR")
    if not build_dir:
        build_dir = os.path.join(tempfile.gettempdir(), "kata-cpp-cri-proto-%d" % os.getuid())
    os.makedirs(build_dir, exist_ok=True)
    out = os.path.join(build_dir, "api_pb2.py")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(PROTO):
        protoc = shutil.which("protoc") or "/usr/bin/protoc"
        if not os.path.exists(protoc):
            raise RuntimeError("protoc not found (apt-get install protobuf-compiler)")
        # Compile into a private dir, then rename: concurrent test runs may share build_dir.
        tmp = tempfile.mkdtemp(dir=build_dir, prefix=".protoc-")
        try:
            subprocess.run([protoc, "--python_out=" + tmp, "-I", os.path.dirname(PROTO), PROTO],
                           check=True)
            os.replace(os.path.join(tmp, "api_pb2.py"), out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if build_dir not in sys.path:
        sys.path.insert(0, build_dir)
    _api = importlib.import_module("api_pb2")
    return _api


class CriError(Exception):
    """A CRI call failed: .code is the grpc.StatusCode, .details the server's message."""

    def __init__(self, method, code, details):
        super().__init__("%s: %s: %s" % (method, code.name if code else "?", details))
        self.method, self.code, self.details = method, code, details


class CriClient:
    def __init__(self, socket, timeout=120.0, build_dir=None):
        self.api = load_api(build_dir)
        target = socket if socket.startswith("unix:") else "unix://" + os.path.abspath(socket)
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.timeout = timeout
        self.methods = {}  # name -> (path, request class, response class)
        for svc_name in SERVICES:
            svc = self.api.DESCRIPTOR.services_by_name[svc_name]
            for m in svc.methods:
                req = getattr(self.api, m.input_type.name)
                resp = getattr(self.api, m.output_type.name)
                self.methods[m.name] = ("/%s.%s/%s" % (PACKAGE, svc_name, m.name), req, resp)
        self._stubs = {}

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, method, fields=None, **kwargs):
        """Builds METHOD's request message from a message, a dict and/or keyword fields."""
        _, req_cls, _ = self.methods[method]
        if isinstance(fields, message.Message):
            if kwargs:
                raise TypeError("give a request message or fields, not both")
            return fields
        merged = dict(fields or {})
        merged.update(kwargs)
        return json_format.ParseDict(merged, req_cls(), ignore_unknown_fields=False)

    def call(self, method, fields=None, _timeout=None, **kwargs):
        if method not in self.methods:
            raise AttributeError("no CRI method %s" % method)
        path, req_cls, resp_cls = self.methods[method]
        stub = self._stubs.get(method)
        if stub is None:
            stub = self.channel.unary_unary(path, request_serializer=req_cls.SerializeToString,
                                            response_deserializer=resp_cls.FromString)
            self._stubs[method] = stub
        req = self.request(method, fields, **kwargs)
        try:
            return stub(req, timeout=_timeout or self.timeout)
        except grpc.RpcError as e:
            raise CriError(method, e.code(), e.details()) from None

    def __getattr__(self, name):
        if name.startswith("_") or name not in self.__dict__.get("methods", {}):
            raise AttributeError(name)
        # `_timeout` (the gRPC deadline, seconds) is not `timeout`: ExecSync and StopContainer
        # have request fields of that name.
        return lambda fields=None, _timeout=None, **kw: self.call(name, fields, _timeout, **kw)

    # ---- helpers on top of the plain calls ----

    def wait_ready(self, seconds=30.0):
        """Waits until Version answers; returns the VersionResponse or raises CriError."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.call("Version", {"version": "v1"}, _timeout=2)
            except CriError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def cleanup(self, log=None):
        """Stops and removes every container and pod sandbox; returns the ids removed."""
        removed = []
        for c in self.call("ListContainers", {}).containers:
            for method, extra in (("StopContainer", {"timeout": 0}), ("RemoveContainer", {})):
                try:
                    self.call(method, container_id=c.id, **extra)
                except CriError as e:
                    if log:
                        log("cleanup: %s" % e)
            removed.append(c.id)
        for p in self.call("ListPodSandbox", {}).items:
            for method in ("StopPodSandbox", "RemovePodSandbox"):
                try:
                    self.call(method, pod_sandbox_id=p.id)
                except CriError as e:
                    if log:
                        log("cleanup: %s" % e)
            removed.append(p.id)
        return removed


def to_dict(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def to_json(msg):
    return json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=2,
                                     sort_keys=True)


def _read_request(text):
    if text is None:
        return {}
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    return json.loads(text) if text.strip() else {}


def main(argv=None):
    ap = argparse.ArgumentParser(description="kata-cpp's CRI v1 test client")
    ap.add_argument("--socket", default=os.environ.get("CRI_SOCKET",
                                                       "/run/containerd/containerd.sock"))
    ap.add_argument("--timeout", type=float, default=120.0, help="per call, seconds")
    ap.add_argument("--build-dir", help="where api_pb2.py is generated (default: a temp dir)")
    ap.add_argument("method", help="a CRI method name, or methods / cleanup / wait")
    ap.add_argument("request", nargs="?", help="request JSON, @FILE or - (stdin)")
    args = ap.parse_args(argv)

    try:
        cri = CriClient(args.socket, timeout=args.timeout, build_dir=args.build_dir)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print("cri_client: %s" % e, file=sys.stderr)
        return 2
    with cri:
        try:
            if args.method == "methods":
                for name, (path, req, resp) in sorted(cri.methods.items()):
                    print("%-26s %s(%s) -> %s" % (name, path, req.__name__, resp.__name__))
                return 0
            if args.method == "wait":
                print(to_json(cri.wait_ready(float(args.request or 30))))
                return 0
            if args.method == "cleanup":
                for rid in cri.cleanup(log=lambda s: print(s, file=sys.stderr)):
                    print(rid)
                return 0
            if args.method not in cri.methods:
                print("cri_client: unknown method %s (see `methods`)" % args.method,
                      file=sys.stderr)
                return 2
            print(to_json(cri.call(args.method, _read_request(args.request))))
            return 0
        except CriError as e:
            print("cri_client: %s" % e, file=sys.stderr)
            return 1
        except (ValueError, json_format.ParseError) as e:
            print("cri_client: bad request: %s" % e, file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
