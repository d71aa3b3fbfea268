#!/usr/bin/python3
"""The CRI end-to-end scenario run by cri_runc_test.sh and cri_kata_test.sh.

Runs inside the test's network namespace (cri_setup made it), against the test's containerd,
with one runtime handler. Prints one `PASS: name: detail` or `FAIL: name: reason` line per
check; the calling script counts them. Checks whose prerequisite failed are reported as FAIL
("not run: ..."), so every run reports the same number of checks.

The environment comes from tests/cri/lib.sh's cri_setup: CRI_SOCKET CRI_DIR CRI_SUBNET
CRI_GATEWAY CRI_NETWORK CRI_LOG_DIR CRI_CGROUP_PARENT CRI_PAUSE_IMAGE CRI_BUSYBOX_IMAGE.
"""

import argparse
import glob
import ipaddress
import os
import random
import subprocess
import re
import shutil
import sys
import time
import traceback
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cri_client import CriClient, CriError  # noqa: E402
from cri_stream import StreamSession, exit_code  # noqa: E402

CNI_RESULTS = "/var/lib/cni/results"
POD_MEMORY = 256 << 20
KUBELET_MASKED_PATHS = ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                        "/proc/scsi", "/sys/firmware"]
KUBELET_READONLY_PATHS = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"]
# tests/e2e/lib.sh's kata configuration: default_memory = 512, default_vcpus 1.
KATA_DEFAULT_MEMORY_MIB = 512


class NotRun(Exception):
    pass


class Scenario:
    def __init__(self, args):
        self.args = args
        self.handler = args.handler
        self.env = os.environ
        self.cri = CriClient(self.env["CRI_SOCKET"], timeout=args.call_timeout,
                             build_dir=os.path.join(self.env["CRI_DIR"], "proto-build"))
        self.api = self.cri.api
        self.passed = 0
        self.failed = 0
        self.state = {}
        self.loop_devices = []
        self.subnet = ipaddress.ip_network(self.env["CRI_SUBNET"])
        self.gateway = self.env["CRI_GATEWAY"]
        self.token = "kcri-token-%08x" % random.getrandbits(32)
        self.host_port = random.randint(20000, 29999)
        self.dns_server = str(self.subnet.network_address + 53)  # never answers; not contacted
        suffix = self.env.get("CRI_ID", "%08x" % random.getrandbits(32))
        self.pod_name = "kcri-pod-" + suffix
        self.pod_uid = "uid-" + suffix
        self.pod_hostname = "kcri-host-" + suffix[:6]
        self.share = os.path.join(self.env["CRI_DIR"], "share")
        self.configmap = os.path.join(self.env["CRI_DIR"], "kubelet", "pods", "uid-1", "volumes",
                                      "kubernetes.io~configmap", "settings")
        # Where the kubelet keeps a pod's emptyDirs; the runtime recognises them by the path.
        vols = os.path.join(self.env["CRI_DIR"], "kubelet", "pods", "uid-1", "volumes",
                            "kubernetes.io~empty-dir")
        self.empty_disk = os.path.join(vols, "cache")
        self.empty_mem = os.path.join(vols, "mem")
        self.log_dir = os.path.join(self.env["CRI_LOG_DIR"], "kcri_%s_%s" % (self.pod_name,
                                                                            self.pod_uid))

    # ---- reporting ----

    def check(self, name, fn, needs=()):
        missing = [n for n in needs if n not in self.state]
        if missing:
            self.report(False, name, "not run: needs %s" % ", ".join(missing))
            return None
        try:
            detail = fn()
        except NotRun as e:
            self.report(False, name, "not run: %s" % e)
            return None
        except (AssertionError, CriError, OSError, ValueError, KeyError) as e:
            self.report(False, name, "%s: %s" % (type(e).__name__, e))
            return None
        except Exception as e:  # a bug in the scenario itself: still one FAIL line, go on
            self.report(False, name, "unexpected %s: %s\n%s" % (type(e).__name__, e,
                                                                traceback.format_exc()))
            return None
        self.report(True, name, detail or "")
        return True

    def report(self, ok, name, detail):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        line = "%s: %s [%s]%s" % ("PASS" if ok else "FAIL", name, self.handler,
                                  (": " + detail) if detail else "")
        print(line, flush=True)

    # ---- helpers ----

    def wait_for(self, what, fn, seconds, interval=0.25):
        """Calls fn until it returns a true value (returned) or `seconds` pass (AssertionError
        with the last value or error)."""
        deadline = time.monotonic() + seconds * self.args.time_scale
        last = None
        while True:
            try:
                value = fn()
                if value:
                    return value
                last = repr(value)
            except (CriError, OSError, AssertionError, ValueError) as e:
                last = "%s: %s" % (type(e).__name__, e)
            if time.monotonic() >= deadline:
                raise AssertionError("timed out waiting for %s (last: %s)" % (what, last))
            time.sleep(interval)

    def http_get(self, url, timeout=2.0):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=timeout) as r:
            return r.read().decode(errors="replace")

    def exec_sync(self, cid, cmd, timeout=30):
        # `timeout` is ExecSync's own (seconds, in the request); the gRPC deadline is longer.
        return self.cri.ExecSync(container_id=cid, cmd=cmd, timeout=timeout,
                                 _timeout=timeout * self.args.time_scale + 30)

    def pod_config(self, name=None):
        """The main pod's config; with `name`, a small pod of that name (no host port)."""
        if name:
            cfg = self.pod_config()
            cfg["metadata"] = dict(cfg["metadata"], name=name, uid="uid-" + name)
            cfg["hostname"] = name[-63:]
            cfg["log_directory"] = os.path.join(self.env["CRI_LOG_DIR"], name)
            cfg["port_mappings"] = []
            cfg["labels"] = {"kcri-test": "1", "app": name}
            return cfg
        return {
            "metadata": {"name": self.pod_name, "uid": self.pod_uid, "namespace": "kcri",
                         "attempt": 0},
            "hostname": self.pod_hostname,
            "log_directory": self.log_dir,
            "dns_config": {"servers": [self.dns_server],
                           "searches": ["kcri.test", "svc.kcri.test"],
                           "options": ["ndots:2", "timeout:1"]},
            "port_mappings": [{"protocol": "TCP", "container_port": 8080,
                               "host_port": self.host_port}],
            "labels": {"kcri-test": "1", "app": "web"},
            "annotations": {"kcri.example/note": "cri end-to-end test"},
            "linux": {
                "cgroup_parent": self.env["CRI_CGROUP_PARENT"],
                "sysctls": {"kernel.shm_rmid_forced": "1"},
                "security_context": {
                    "namespace_options": {"network": "POD", "pid": "CONTAINER", "ipc": "POD"},
                },
                # What the kubelet passes for a pod whose containers ask 256 MiB and 1 CPU in
                # all; containerd turns it into the io.kubernetes.cri.sandbox-* annotations.
                "resources": {"memory_limit_in_bytes": POD_MEMORY, "cpu_period": 100000,
                              "cpu_quota": 100000},
            },
        }

    def container_config(self, name, command, **extra):
        cfg = {
            "metadata": {"name": name, "attempt": 0},
            "image": {"image": self.env["CRI_BUSYBOX_IMAGE"]},
            "command": command,
            "log_path": "%s/0.log" % name,
            "labels": {"kcri-test": "1", "container": name},
            "annotations": {"kcri.example/container": name},
            "linux": {"resources": {"cpu_shares": 256, "memory_limit_in_bytes": 256 << 20},
                      "security_context": {"namespace_options": {"network": "POD",
                                                                 "pid": "CONTAINER",
                                                                 "ipc": "POD"},
                                           "no_new_privs": True,
                                           "seccomp": {"profile_type": "RuntimeDefault"}}},
        }
        cfg.update(extra)
        return cfg

    def create_and_start(self, key, name, command, **extra):
        pod = self.state["pod"]
        cid = self.cri.CreateContainer(pod_sandbox_id=pod,
                                       config=self.container_config(name, command, **extra),
                                       sandbox_config=self.pod_config()).container_id
        assert cid, "CreateContainer returned no id"
        self.state[key + "_created"] = cid
        self.cri.StartContainer(container_id=cid)
        self.state[key] = cid
        return cid

    def status(self, cid):
        return self.cri.ContainerStatus(container_id=cid).status

    def write_configmap(self, value):
        """Lays out (or updates) a configmap volume as the kubelet's atomic writer does: the
        files in a timestamped dir, `..data` pointing at it (swapped by rename), and each key
        a symlink through `..data`."""
        os.makedirs(self.configmap, exist_ok=True)
        old = None
        data = os.path.join(self.configmap, "..data")
        if os.path.islink(data):
            old = os.path.join(self.configmap, os.readlink(data))
        stamp = "..%s_%d" % (value, time.monotonic_ns())
        os.makedirs(os.path.join(self.configmap, stamp))
        with open(os.path.join(self.configmap, stamp, "mode"), "w") as f:
            f.write(value + "\n")
        tmp = os.path.join(self.configmap, "..data_tmp")
        os.symlink(stamp, tmp)
        os.rename(tmp, data)
        key = os.path.join(self.configmap, "mode")
        if not os.path.islink(key):
            os.symlink("..data/mode", key)
        if old:
            shutil.rmtree(old)

    def cni_results(self):
        net = self.env["CRI_NETWORK"]
        pod = self.state.get("pod", "")
        try:
            return sorted(f for f in os.listdir(CNI_RESULTS)
                          if f.startswith(net + "-" + pod))
        except FileNotFoundError:
            return []

    # ---- the checks ----

    def run(self):
        A = self.api
        os.makedirs(self.share, exist_ok=True)
        os.makedirs(self.empty_disk, exist_ok=True)
        os.makedirs(self.empty_mem, exist_ok=True)
        # medium: Memory: the kubelet mounts a tmpfs on the volume's host path.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "kcri-emptydir",
                        self.empty_mem], check=True)
        with open(os.path.join(self.share, "hello.txt"), "w") as f:
            f.write("hello from the host\n")
        self.write_configmap("first")

        def version():
            v = self.cri.Version(version="v1")
            assert v.runtime_name == "containerd", v.runtime_name
            assert v.runtime_api_version == "v1", v.runtime_api_version
            return "%s %s, CRI %s" % (v.runtime_name, v.runtime_version, v.runtime_api_version)
        self.check("Version", version)

        def runtime_ready():
            st = self.cri.Status(verbose=False).status
            conds = {c.type: (c.status, c.reason) for c in st.conditions}
            assert conds.get("RuntimeReady", (False,))[0], conds
            assert conds.get("NetworkReady", (False,))[0], conds
            return ", ".join("%s=%s" % (k, v[0]) for k, v in sorted(conds.items()))
        self.check("Status: RuntimeReady and NetworkReady", runtime_ready)

        def images():
            names = []
            for ref in (self.env["CRI_PAUSE_IMAGE"], self.env["CRI_BUSYBOX_IMAGE"]):
                img = self.cri.ImageStatus(image={"image": ref}).image
                assert img.id, "ImageStatus: %s not found" % ref
                assert img.size > 0, "%s: size 0" % ref
                names.append("%s (%s)" % (ref, img.id[:19]))
            listed = {t for i in self.cri.ListImages().images for t in i.repo_tags}
            for ref in (self.env["CRI_PAUSE_IMAGE"], self.env["CRI_BUSYBOX_IMAGE"]):
                assert ref in listed, "ListImages lacks %s: %s" % (ref, sorted(listed))
            missing = self.cri.ImageStatus(image={"image": "docker.io/kcri/absent:1"}).image
            assert not missing.id, "ImageStatus of an absent image returned %s" % missing.id
            return ", ".join(names)
        self.check("ImageStatus/ListImages: pause and busybox imported", images)

        def run_pod():
            t0 = time.monotonic()
            pod = self.cri.RunPodSandbox(config=self.pod_config(),
                                         runtime_handler=self.handler,
                                         _timeout=self.args.call_timeout * self.args.time_scale
                                         ).pod_sandbox_id
            assert pod, "no pod_sandbox_id"
            self.state["pod"] = pod
            return "%s in %.1fs" % (pod[:12], time.monotonic() - t0)
        self.check("RunPodSandbox", run_pod)

        def pod_status():
            st = self.cri.PodSandboxStatus(pod_sandbox_id=self.state["pod"]).status
            assert st.state == A.SANDBOX_READY, A.PodSandboxState.Name(st.state)
            assert st.metadata.name == self.pod_name, st.metadata
            assert st.runtime_handler == self.handler, st.runtime_handler
            assert st.labels.get("app") == "web", dict(st.labels)
            assert st.annotations.get("kcri.example/note") == "cri end-to-end test", \
                dict(st.annotations)
            assert st.created_at > 0
            return "READY, handler %s" % st.runtime_handler
        self.check("PodSandboxStatus: ready, metadata/labels/annotations kept", pod_status,
                   needs=("pod",))

        def pod_ip():
            st = self.cri.PodSandboxStatus(pod_sandbox_id=self.state["pod"]).status
            ip = st.network.ip
            assert ip, "PodSandboxStatus has no network.ip"
            assert ipaddress.ip_address(ip) in self.subnet, "%s not in %s" % (ip, self.subnet)
            assert ip != self.gateway
            self.state["ip"] = ip
            extra = [a.ip for a in st.network.additional_ips]
            return "%s from the bridge's %s%s" % (ip, self.subnet,
                                                  (" (+%s)" % extra) if extra else "")
        self.check("PodSandboxStatus: pod IP from the bridge subnet", pod_ip, needs=("pod",))

        def cni_result():
            files = self.cni_results()
            assert files, "no %s/%s-%s-* entry" % (CNI_RESULTS, self.env["CRI_NETWORK"],
                                                   self.state["pod"])
            return ", ".join(files)
        self.check("CNI: result cached for the pod", cni_result, needs=("pod",))

        def list_pods():
            items = self.cri.ListPodSandbox(filter={"label_selector": {"kcri-test": "1"}}).items
            ids = [p.id for p in items]
            assert ids == [self.state["pod"]], ids
            assert items[0].state == A.SANDBOX_READY
            assert items[0].runtime_handler == self.handler, items[0].runtime_handler
            ready = self.cri.ListPodSandbox(filter={"state": {"state": "SANDBOX_NOTREADY"}}).items
            assert not ready, "NOTREADY filter matched %s" % [p.id for p in ready]
            return "1 pod, READY"
        self.check("ListPodSandbox: label and state filters", list_pods, needs=("pod",))

        # httpd as PID 1 would ignore SIGTERM (no handler), so a shell with a trap stays PID 1.
        web_cmd = ["/bin/sh", "-c",
                   "trap 'exit 0' TERM; echo web-log-line; echo err-log-line >&2; "
                   "mkdir -p /www; echo %s > /www/index.html; httpd -f -p 8080 -h /www & wait"
                   % self.token]

        def start_web():
            cid = self.create_and_start(
                "web", "web", web_cmd,
                envs=[{"key": "KCRI_GREETING", "value": "hello-env"}],
                working_dir="/tmp",
                mounts=[{"container_path": "/share", "host_path": self.share,
                         "readonly": True, "propagation": "PROPAGATION_PRIVATE"},
                        {"container_path": "/config", "host_path": self.configmap,
                         "readonly": True},
                        {"container_path": "/cache", "host_path": self.empty_disk},
                        {"container_path": "/mem", "host_path": self.empty_mem}])
            self.wait_for("web running",
                          lambda: self.status(cid).state == A.CONTAINER_RUNNING, 30)
            return "%s running" % cid[:12]
        self.check("CreateContainer+StartContainer: busybox httpd", start_web, needs=("pod",))

        def web_status():
            st = self.status(self.state["web"])
            assert st.state == A.CONTAINER_RUNNING, A.ContainerState.Name(st.state)
            assert st.metadata.name == "web"
            assert st.started_at >= st.created_at > 0, (st.created_at, st.started_at)
            assert st.finished_at == 0, st.finished_at
            assert st.log_path == os.path.join(self.log_dir, "web/0.log"), st.log_path
            assert st.labels.get("container") == "web", dict(st.labels)
            assert st.annotations.get("kcri.example/container") == "web"
            assert st.image.image, st.image
            assert st.image_ref.startswith("sha256:") or "@sha256:" in st.image_ref, st.image_ref
            mounts = {m.container_path: m for m in st.mounts}
            assert "/share" in mounts and mounts["/share"].readonly, list(mounts)
            return "RUNNING, log_path %s" % st.log_path
        self.check("ContainerStatus: running container", web_status, needs=("web",))

        def http_by_ip():
            url = "http://%s:8080/index.html" % self.state["ip"]
            body = self.wait_for(url, lambda: self.http_get(url), 30)
            assert body.strip() == self.token, body
            return "%s -> %s" % (url, body.strip())
        self.check("network: test reaches the pod's server by pod IP", http_by_ip,
                   needs=("web", "ip"))

        def host_port():
            url = "http://%s:%d/index.html" % (self.gateway, self.host_port)
            body = self.wait_for(url, lambda: self.http_get(url), 15)
            assert body.strip() == self.token, body
            return "%s -> pod :8080" % url
        self.check("network: port mapping (portmap) reaches the pod", host_port,
                   needs=("web", "ip"))

        def start_client():
            cid = self.create_and_start(
                "client", "client",
                ["/bin/sh", "-c", "trap 'exit 0' TERM; echo client-up; "
                 "while :; do sleep 1; done"],
                mounts=[{"container_path": "/cache", "host_path": self.empty_disk},
                        {"container_path": "/mem", "host_path": self.empty_mem}])
            self.wait_for("client running",
                          lambda: self.status(cid).state == A.CONTAINER_RUNNING, 30)
            return "%s running" % cid[:12]
        self.check("CreateContainer+StartContainer: second container", start_client,
                   needs=("pod",))

        def localhost():
            def fetch():
                # Not `wget -T`: Debian's busybox-static 1.35 wget segfaults with it.
                r = self.exec_sync(self.state["client"],
                                   ["timeout", "5", "wget", "-q", "-O", "-",
                                    "http://127.0.0.1:8080/index.html"])
                assert r.exit_code == 0, "wget exit %d: %s" % (r.exit_code, r.stderr)
                return r.stdout.decode()
            body = self.wait_for("wget localhost", fetch, 20, interval=0.5)
            assert body.strip() == self.token, body
            return "client -> 127.0.0.1:8080 -> %s" % body.strip()
        self.check("network: second container reaches it on localhost", localhost,
                   needs=("web", "client"))

        def exec_exit():
            r = self.exec_sync(self.state["web"],
                               ["sh", "-c", "echo hi; echo oops >&2; exit 3"])
            assert r.stdout == b"hi\n", r.stdout
            assert r.stderr == b"oops\n", r.stderr
            assert r.exit_code == 3, r.exit_code
            ok = self.exec_sync(self.state["web"], ["true"])
            assert ok.exit_code == 0, ok.exit_code
            return "stdout %r, stderr %r, exit_code %d" % (r.stdout, r.stderr, r.exit_code)
        self.check("ExecSync: stdout, stderr and exit code", exec_exit, needs=("web",))

        def exec_env():
            r = self.exec_sync(self.state["web"], ["sh", "-c", "echo $KCRI_GREETING; pwd"])
            assert r.exit_code == 0, r
            assert r.stdout == b"hello-env\n/tmp\n", r.stdout
            return "env and working_dir applied"
        self.check("ExecSync: container env and working_dir", exec_env, needs=("web",))

        def hostname():
            r = self.exec_sync(self.state["web"], ["hostname"])
            got = r.stdout.decode().strip()
            assert got == self.pod_hostname, "hostname %r, want %r" % (got, self.pod_hostname)
            return got
        self.check("pod config: hostname", hostname, needs=("web",))

        def resolv():
            text = self.exec_sync(self.state["web"], ["cat", "/etc/resolv.conf"]) \
                .stdout.decode()
            lines = [ln.split() for ln in text.splitlines() if ln.strip()]
            assert ["nameserver", self.dns_server] in lines, text
            assert ["search", "kcri.test", "svc.kcri.test"] in lines, text
            assert ["options", "ndots:2", "timeout:1"] in lines, text
            return " | ".join(" ".join(ln) for ln in lines)
        self.check("pod config: DNS servers/searches/options in /etc/resolv.conf", resolv,
                   needs=("web",))

        def mount_ro():
            r = self.exec_sync(self.state["web"], ["cat", "/share/hello.txt"])
            assert r.stdout == b"hello from the host\n", r
            w = self.exec_sync(self.state["web"], ["sh", "-c", "echo x > /share/written"])
            assert w.exit_code != 0, "writing to a readonly mount succeeded"
            assert not os.path.exists(os.path.join(self.share, "written"))
            return "host file visible, write refused (exit %d)" % w.exit_code
        self.check("mounts: readonly host_path mount", mount_ro, needs=("web",))

        def configmap_update():
            r = self.exec_sync(self.state["web"], ["cat", "/config/mode"])
            assert r.stdout == b"first\n", r
            w = self.exec_sync(self.state["web"], ["sh", "-c", "echo x > /config/mode"])
            assert w.exit_code != 0, "writing to the configmap volume succeeded"
            t0 = time.monotonic()
            self.write_configmap("second")
            self.wait_for("the updated configmap in the container", lambda: self.exec_sync(
                self.state["web"], ["cat", "/config/mode"]).stdout == b"second\n", 30)
            return "read-only; the kubelet-style update (..data swapped) seen after %.1fs" % (
                time.monotonic() - t0)
        self.check("volumes: a configmap updated on the host is seen updated in the container",
                   configmap_update, needs=("web",))

        def empty_dirs():
            for d in ("/cache", "/mem"):
                w = self.exec_sync(self.state["web"],
                                   ["sh", "-c", "echo shared-%s > %s/f" % (self.token, d)])
                assert w.exit_code == 0, "web writes %s: %r" % (d, w.stderr)
                r = self.exec_sync(self.state["client"], ["cat", d + "/f"])
                assert r.stdout.decode().strip() == "shared-" + self.token, (d, r)
            fstype = self.exec_sync(self.state["client"], ["sh", "-c",
                                    "awk '$2 == \"/mem\" {print $3}' /proc/mounts"])
            assert fstype.stdout.decode().split() == ["tmpfs"], fstype.stdout
            on_host = os.path.exists(os.path.join(self.empty_disk, "f"))
            if self.handler == "kata":
                # Kata keeps emptyDirs in the guest; the host path stays empty.
                assert not on_host, "a kata emptyDir was written through to the host"
                return "/cache (local) and /mem (tmpfs) shared by both containers, in the guest"
            assert on_host, "runc's emptyDir is the host directory"
            return "/cache and /mem (tmpfs) shared by both containers"
        self.check("volumes: emptyDir (disk and medium Memory) shared by the pod's containers",
                   empty_dirs, needs=("web", "client"))

        def oom_killed():
            limit = 32 * 1024 * 1024
            cid = self.create_and_start(
                "hog", "hog", ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                linux={"resources": {"memory_limit_in_bytes": limit},
                       "security_context": {"namespace_options": {"network": "POD",
                                                                  "pid": "CONTAINER",
                                                                  "ipc": "POD"}}})
            st = self.wait_for("hog exits", lambda: (lambda s: s if s.state ==
                               A.CONTAINER_EXITED else None)(self.status(cid)), 60)
            assert st.reason == "OOMKilled", "reason %r, exit code %d, message %r" % (
                st.reason, st.exit_code, st.message)
            assert st.exit_code == 137, st.exit_code
            self.cri.RemoveContainer(container_id=cid)  # later checks count the pod's containers
            self.state.pop("hog", None)
            self.state.pop("hog_created", None)
            return "64 MiB allocation under a 32 MiB limit: EXITED %d, reason %s" % (
                st.exit_code, st.reason)
        self.check("resources: over its memory limit a container is OOMKilled", oom_killed,
                   needs=("pod",))

        def seccomp():
            # A localhost profile that refuses mkdir: enforced for the container's processes.
            profile = os.path.join(self.env["CRI_DIR"], "no-mkdir.json")
            with open(profile, "w") as f:
                f.write('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": '
                        '["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}')
            ns = {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}
            cid = self.create_and_start(
                "sec", "sec", ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
                linux={"security_context": {"namespace_options": ns, "seccomp": {
                    "profile_type": "Localhost", "localhost_ref": profile}}})
            self.wait_for("sec running",
                          lambda: self.status(cid).state == A.CONTAINER_RUNNING, 30)
            status = self.exec_sync(cid, ["grep", "^Seccomp:", "/proc/self/status"])
            assert status.stdout.split() == [b"Seccomp:", b"2"], status.stdout
            r = self.exec_sync(cid, ["mkdir", "/tmp/refused"])
            assert r.exit_code != 0, "mkdir succeeded under a profile that refuses it"
            assert b"not permitted" in r.stderr, r.stderr
            ok = self.exec_sync(cid, ["touch", "/tmp/allowed"])
            assert ok.exit_code == 0, ok.stderr
            # RuntimeDefault (what the web container runs with): a filter is installed too.
            d = self.exec_sync(self.state["web"], ["grep", "^Seccomp:", "/proc/self/status"])
            assert d.stdout.split() == [b"Seccomp:", b"2"], d.stdout
            self.cri.StopContainer(container_id=cid, timeout=10)
            self.cri.RemoveContainer(container_id=cid)
            self.state.pop("sec", None)
            self.state.pop("sec_created", None)
            return "localhost profile: mkdir refused (%s), touch allowed; runtime/default " \
                "filter on the web container" % r.stderr.decode().strip()
        self.check("security: seccomp profiles enforced (localhost and runtime/default)",
                   seccomp, needs=("web",))

        def security_context():
            ns = {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}
            loop = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
            user = self.create_and_start(
                "secuser", "secuser", loop,
                linux={"security_context": {
                    "namespace_options": ns, "run_as_user": {"value": 1234},
                    "run_as_group": {"value": 2345}, "supplemental_groups": [3456],
                    "readonly_rootfs": True, "no_new_privs": True}})
            caps = self.create_and_start(
                "seccaps", "seccaps", loop,
                linux={"security_context": {
                    "namespace_options": ns,
                    "capabilities": {"add_capabilities": ["NET_ADMIN"],
                                     "drop_capabilities": ["CHOWN"]},
                    # What the kubelet sends for procMount: Default.
                    "masked_paths": KUBELET_MASKED_PATHS,
                    "readonly_paths": KUBELET_READONLY_PATHS}})
            for cid in (user, caps):
                self.wait_for("security context containers running",
                              lambda: self.status(cid).state == A.CONTAINER_RUNNING, 30)
            try:
                ids = self.exec_sync(user, ["sh", "-c", "id -u; id -g; id -G"]).stdout.split()
                assert ids[:2] == [b"1234", b"2345"], ids
                assert b"3456" in ids[2:], "supplemental group 3456 missing: %s" % ids
                ro = self.exec_sync(user, ["touch", "/etc/written"])
                assert ro.exit_code != 0, "wrote to a read-only rootfs"
                nnp = self.exec_sync(user, ["grep", "^NoNewPrivs:", "/proc/self/status"])
                assert nnp.stdout.split() == [b"NoNewPrivs:", b"1"], nnp.stdout
                st = self.exec_sync(caps, ["grep", "^CapEff:", "/proc/self/status"])
                eff = int(st.stdout.split()[1], 16)
                assert not eff & (1 << 0), "CAP_CHOWN not dropped: CapEff %x" % eff
                assert eff & (1 << 12), "CAP_NET_ADMIN not added: CapEff %x" % eff
                assert not eff & (1 << 21), "CAP_SYS_ADMIN without privileged: %x" % eff
                # The CRI's default masked paths: those that exist are covered by a mount
                # (/dev/null for a file, an empty read-only tmpfs for a directory).
                masked = self.exec_sync(caps, ["sh", "-c", "for p in /proc/acpi /proc/kcore "
                                               "/proc/keys /proc/timer_list /proc/sched_debug "
                                               "/proc/scsi /sys/firmware; do [ -e $p ] || "
                                               "continue; if [ -d $p ]; then n=$(ls -A $p | "
                                               "wc -l); else n=$(wc -c < $p); fi; echo $p $n; "
                                               "done"])
                lines = masked.stdout.decode().splitlines()
                assert lines, "none of the masked paths exists: %r" % masked
                unmasked = [ln for ln in lines if ln.split()[1:] != ["0"]]
                assert not unmasked, "not masked (path, size or entries): %s" % unmasked
                rosys = self.exec_sync(caps, ["sh", "-c", "echo 1 > /proc/sys/vm/overcommit_memory"])
                assert rosys.exit_code != 0, "/proc/sys is writable"
                sysctl = self.exec_sync(caps, ["cat", "/proc/sys/kernel/shm_rmid_forced"])
                assert sysctl.stdout.strip() == b"1", "pod sysctl kernel.shm_rmid_forced: %r" % (
                    sysctl.stdout)
            finally:
                for key, cid in (("secuser", user), ("seccaps", caps)):
                    self.cri.StopContainer(container_id=cid, timeout=10)
                    self.cri.RemoveContainer(container_id=cid)
                    self.state.pop(key, None)
                    self.state.pop(key + "_created", None)
            return "uid 1234 gid 2345 +3456, read-only rootfs, no_new_privs; CapEff %x (CHOWN " \
                "dropped, NET_ADMIN added), %s masked, /proc/sys read-only, pod sysctl " \
                "applied" % (eff, " ".join(ln.split()[0] for ln in lines))
        self.check("security: run-as user/groups, read-only rootfs, capabilities, masked and "
                   "read-only paths, sysctls", security_context, needs=("web",))

        def kernel():
            r = self.exec_sync(self.state["web"], ["uname", "-r"])
            guest = r.stdout.decode().strip()
            host = os.uname().release
            assert guest, r
            if self.handler == "kata":
                assert guest != host, "container kernel %s is the host's" % guest
                return "container %s, host %s" % (guest, host)
            assert guest == host, "runc container kernel %s != host %s" % (guest, host)
            return "shared host kernel %s" % host
        self.check("kernel: uname -r in the container (%s)" %
                   ("differs from the host's" if self.handler == "kata"
                    else "is the host's"), kernel, needs=("web",))

        def sizing():
            mem = self.exec_sync(self.state["web"], ["sh", "-c",
                                 "awk '/^MemTotal:/ {print $2}' /proc/meminfo; nproc"])
            kib, cpus = (int(x) for x in mem.stdout.split())
            # MemTotal is the VM's memory less what the kernel keeps for itself (tens of MiB).
            want_mib = KATA_DEFAULT_MEMORY_MIB + (POD_MEMORY >> 20)
            assert kib > (want_mib - 64) * 1024, "guest MemTotal %d KiB, want about %d MiB" % (
                kib, want_mib)
            assert kib <= want_mib * 1024, "guest MemTotal %d KiB over %d MiB" % (kib, want_mib)
            assert cpus == 2, "guest has %d CPUs, want default_vcpus 1 + 1 for the pod" % cpus
            return "VM of %d MiB (default_memory 512 + pod 256; MemTotal %d KiB), %d vCPUs" % (
                want_mib, kib, cpus)
        if self.handler == "kata":  # runc has no VM to size
            self.check("sizing: the VM is default_memory/default_vcpus plus the pod's resources",
                       sizing, needs=("web",))

        def cgroup_only():
            pod = self.state["pod"]
            want = "%s/%s" % (self.env["CRI_CGROUP_PARENT"], pod)
            found = {}
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        argv = f.read().split(b"\0")
                    with open("/proc/%s/cgroup" % pid) as f:
                        cgroups = f.read()
                except OSError:
                    continue
                name = os.path.basename(argv[0].decode(errors="replace"))
                if name.startswith("qemu-system") and ("sandbox-" + pod).encode() in argv:
                    found["qemu"] = (pid, cgroups)
                elif name == "containerd-shim-kata-v2" and pod.encode() in argv:
                    found["shim"] = (pid, cgroups)
            assert set(found) == {"qemu", "shim"}, "found %s" % sorted(found)
            for what, (pid, cgroups) in found.items():
                lines = [ln for ln in cgroups.splitlines() if ln.split(":", 2)[1] != "name=systemd"]
                outside = [ln for ln in lines if not ln.split(":", 2)[2] == want]
                assert not outside, "%s (pid %s) outside %s: %s" % (what, pid, want, outside)
            self.state["pod_cgroup"] = want
            return "shim %s and QEMU %s in %s in all %d hierarchies" % (
                found["shim"][0], found["qemu"][0], want, len(lines))
        if self.handler == "kata":
            self.check("sandbox_cgroup_only: shim and QEMU in the pod's host cgroup",
                       cgroup_only, needs=("pod",))

        def log_file():
            path = os.path.join(self.log_dir, "web", "0.log")

            def content():
                with open(path) as f:
                    return f.read()
            text = self.wait_for(path, lambda: (lambda t: t if "err-log-line" in t
                                                and "web-log-line" in t else None)(content()),
                                 10)
            pat = r"^\S+ %s F %s$"
            assert re.search(pat % ("stdout", "web-log-line"), text, re.M), text
            assert re.search(pat % ("stderr", "err-log-line"), text, re.M), text
            return "%s: %d lines in CRI format" % (path, len(text.splitlines()))
        self.check("logs: container output at log_directory/log_path", log_file,
                   needs=("web",))

        def stats():
            # writable_layer comes from containerd's periodic snapshot scan
            # (stats_collect_period, set to 1s by lib.sh): wait for the first one.
            s = self.wait_for("writable layer stats", lambda: (lambda st: st if
                              st.writable_layer.timestamp > 0 else None)(
                self.cri.ContainerStats(container_id=self.state["web"]).stats), 10)
            assert s.attributes.id == self.state["web"], s.attributes.id
            assert s.attributes.metadata.name == "web", s.attributes.metadata
            assert s.cpu.timestamp > 0 and s.cpu.usage_core_nano_seconds.value > 0, s.cpu
            assert s.memory.timestamp > 0 and s.memory.working_set_bytes.value > 0, s.memory
            assert s.writable_layer.fs_id.mountpoint, s.writable_layer
            assert s.writable_layer.used_bytes.value > 0, s.writable_layer
            listed = self.cri.ListContainerStats(
                filter={"pod_sandbox_id": self.state["pod"]}).stats
            ids = sorted(x.attributes.id for x in listed)
            want = sorted(self.state[k] for k in ("web", "client") if k in self.state)
            assert ids == want, (ids, want)
            return "cpu %d ns, working set %d bytes, writable layer %d bytes, %d listed" % (
                s.cpu.usage_core_nano_seconds.value, s.memory.working_set_bytes.value,
                s.writable_layer.used_bytes.value, len(listed))
        self.check("ContainerStats/ListContainerStats", stats, needs=("web",))

        def update():
            limit = 96 << 20
            self.cri.UpdateContainerResources(container_id=self.state["web"],
                                              linux={"memory_limit_in_bytes": limit,
                                                     "cpu_period": 100000,
                                                     "cpu_quota": 50000,
                                                     "cpu_shares": 512})
            script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
                      "cat /sys/fs/cgroup/memory.max")
            r = self.exec_sync(self.state["web"], ["sh", "-c", script])
            got = r.stdout.decode().strip()
            assert got == str(limit), "container sees memory limit %r, want %d" % (got, limit)
            return "memory limit %d seen in the container's cgroup" % limit
        self.check("UpdateContainerResources: new memory limit applies", update,
                   needs=("web",))

        def stream_exec():
            url = self.cri.Exec(container_id=self.state["web"], stdin=True, stdout=True,
                                stderr=True, cmd=["sh", "-c", "read l; echo got:$l; "
                                                  "echo to-stderr >&2; exit 5"]).url
            assert re.match(r"^http://127\.0\.0\.1:\d+/exec/", url), url
            with StreamSession(url) as st:
                st.send_stdin(b"line-" + self.token.encode() + b"\n")
                out = st.read(timeout=30 * self.args.time_scale)
            assert out["stdout"] == b"got:line-%s\n" % self.token.encode(), out
            assert out["stderr"] == b"to-stderr\n", out
            code = exit_code(out["status"])
            assert code == 5, out["status"]
            # A terminal: the process sees a tty, of the size the client sets.
            url = self.cri.Exec(container_id=self.state["web"], stdin=True, stdout=True,
                                tty=True, cmd=["sh", "-c", "read l; test -t 1 && "
                                               "echo tty:$(stty size)"]).url
            with StreamSession(url) as st:
                st.resize(91, 27)
                time.sleep(0.5)
                st.send_stdin(b"go\r")
                tty = st.read(timeout=30 * self.args.time_scale)
            assert b"tty:27 91" in tty["stdout"], tty
            assert exit_code(tty["status"]) == 0, tty["status"]
            return "stdin in, stdout %r, stderr %r, exit code %d; tty 91x27 seen" % (
                out["stdout"], out["stderr"], code)
        self.check("Exec through the streaming server: stdin, stdout, stderr, exit code, tty",
                   stream_exec, needs=("web",))

        def stream_attach():
            cid = self.create_and_start(
                "att", "att", ["/bin/sh", "-c", "echo ready; while read l; do echo echo:$l; "
                               "done"], stdin=True)
            self.wait_for("att running",
                          lambda: self.status(cid).state == A.CONTAINER_RUNNING, 30)
            url = self.cri.Attach(container_id=cid, stdin=True, stdout=True, stderr=True).url
            assert re.match(r"^http://127\.0\.0\.1:\d+/attach/", url), url
            want = b"echo:attached-%s\n" % self.token.encode()
            with StreamSession(url) as st:
                st.send_stdin(b"attached-" + self.token.encode() + b"\n")
                out = st.read(timeout=30 * self.args.time_scale,
                              until=lambda o: want in o["stdout"])
            assert want in out["stdout"], out
            self.cri.StopContainer(container_id=cid, timeout=2)
            self.cri.RemoveContainer(container_id=cid)
            self.state.pop("att", None)
            self.state.pop("att_created", None)
            return "a line sent on stdin came back %r" % want
        self.check("Attach through the streaming server: stdin in, stdout out", stream_attach,
                   needs=("pod",))

        def portforward_url():
            from cri_stream import port_forward
            u = self.cri.PortForward(pod_sandbox_id=self.state["pod"], port=[8080]).url
            assert re.match(r"^http://127\.0\.0\.1:\d+/portforward/", u), u
            # containerd dials localhost:8080 in the pod's netns: with kata the shim takes it
            # there and relays it to the guest, where the web container listens.
            req = b"GET /index.html HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            got = port_forward(u, 8080, req, timeout=30 * self.args.time_scale)
            assert got["error"] == b"", got
            head, _, body = got["data"].partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0]
            assert re.match(rb"^HTTP/1\.[01] 200 ", status), got
            assert body.strip() == self.token.encode(), got
            # 4 MiB the other way: many windows' worth through the channel's flow control.
            import hashlib
            made = self.exec_sync(self.state["web"], [
                "sh", "-c", "head -c 4194304 /dev/urandom > /www/big && md5sum /www/big"])
            assert made.exit_code == 0, made
            want = made.stdout.split()[0].decode()
            u3 = self.cri.PortForward(pod_sandbox_id=self.state["pod"], port=[8080]).url
            t0 = time.monotonic()
            big = port_forward(u3, 8080, req.replace(b"/index.html", b"/big"),
                               timeout=60 * self.args.time_scale)
            took = time.monotonic() - t0
            self.exec_sync(self.state["web"], ["rm", "-f", "/www/big"])
            big_body = big["data"].partition(b"\r\n\r\n")[2]
            assert len(big_body) == 4194304 and hashlib.md5(big_body).hexdigest() == want, (
                len(big_body), big["error"], big["data"][:200])
            # A port nothing listens on: the stream ends with an error, no data and no hang.
            # (A streaming URL is good for one session: ask for another.)
            u2 = self.cri.PortForward(pod_sandbox_id=self.state["pod"], port=[8081]).url
            closed = port_forward(u2, 8081, req, timeout=30 * self.args.time_scale)
            assert closed["data"] == b"" and closed["error"], closed
            return "%s?port=8080: GET /index.html -> %s, %s; 4 MiB /big intact in %.1fs; " \
                "port 8081: %s" % (u.rsplit("/", 1)[0] + "/...", status.decode(),
                                   body.strip().decode(), took,
                                   closed["error"].decode(errors="replace")[-60:])
        self.check("PortForward: streaming URL", portforward_url, needs=("web",))

        def list_containers():
            cs = self.cri.ListContainers(filter={"pod_sandbox_id": self.state["pod"]}).containers
            got = sorted((c.metadata.name, A.ContainerState.Name(c.state)) for c in cs)
            want = sorted((n, "CONTAINER_RUNNING") for n in ("web", "client")
                          if n in self.state)
            assert got == want, got
            by_label = self.cri.ListContainers(
                filter={"label_selector": {"container": "web"}}).containers
            assert [c.id for c in by_label] == [self.state["web"]], [c.id for c in by_label]
            return ", ".join("%s %s" % g for g in got)
        self.check("ListContainers: pod and label filters", list_containers, needs=("web",))

        def oneshot():
            cid = self.create_and_start(
                "oneshot", "oneshot", ["/bin/sh", "-c", "echo bye; exit 7"])
            st = self.wait_for("oneshot exited", lambda: (lambda s: s if s.state ==
                               A.CONTAINER_EXITED else None)(self.status(cid)), 30)
            assert st.exit_code == 7, st.exit_code
            assert st.reason == "Error", st.reason
            # Not finished_at >= started_at: containerd 1.6 stamps started_at after the start
            # returns, so a process that exits at once can have finished "before" it started.
            assert st.started_at > 0 and st.finished_at > 0, (st.started_at, st.finished_at)
            with open(os.path.join(self.log_dir, "oneshot", "0.log")) as f:
                assert " stdout F bye" in f.read()
            return "EXITED, exit_code 7, reason %s" % st.reason
        self.check("ContainerStatus: exited container's exit code and reason", oneshot,
                   needs=("pod",))

        def block_volume():
            # A block-mode volume reaches the runtime as a device in the container config;
            # a loop device over a file of the test stands in for the node's disk.
            img = os.path.join(self.env["CRI_DIR"], "block-volume.img")
            with open(img, "wb") as f:
                f.truncate(8 << 20)
            dev = subprocess.run(["losetup", "--find", "--show", img], check=True,
                                 capture_output=True, text=True).stdout.strip()
            self.loop_devices.append(dev)
            token = "kcri-block-" + self.token
            steps = [("blk-writer", "echo %s | dd of=/dev/kblk bs=512 conv=sync,fsync "
                      "2>/dev/null && ls -l /dev/kblk" % token),
                     ("blk-reader", "dd if=/dev/kblk bs=512 count=1 2>/dev/null | head -n 1")]
            out = []
            for name, script in steps:
                pod_name = "%s-%s" % (name, self.pod_uid[4:])
                cfg = self.pod_config(pod_name)
                pod = self.cri.RunPodSandbox(config=cfg, runtime_handler=self.handler,
                                             _timeout=self.args.call_timeout *
                                             self.args.time_scale).pod_sandbox_id
                try:
                    ccfg = self.container_config(name, ["/bin/sh", "-c", script], devices=[
                        {"container_path": "/dev/kblk", "host_path": dev,
                         "permissions": "rwm"}])
                    cid = self.cri.CreateContainer(pod_sandbox_id=pod, config=ccfg,
                                                   sandbox_config=cfg).container_id
                    self.cri.StartContainer(container_id=cid)
                    st = self.wait_for(name + " exited", lambda: (lambda s: s if s.state ==
                                       A.CONTAINER_EXITED else None)(self.status(cid)), 60)
                    with open(os.path.join(cfg["log_directory"], name, "0.log")) as f:
                        lines = [ln.split(" stdout F ", 1)[1] for ln in f.read().splitlines()
                                 if " stdout F " in ln]
                    assert st.exit_code == 0, "%s: exit %d, output %r" % (name, st.exit_code,
                                                                         lines)
                    out.append(lines)
                finally:
                    self.cri.StopPodSandbox(pod_sandbox_id=pod,
                                            _timeout=120 * self.args.time_scale)
                    self.cri.RemovePodSandbox(pod_sandbox_id=pod)
            assert out[0] and out[0][-1].startswith("b"), \
                "no block device node in the writer: %r" % out[0]
            assert out[1] == [token], "the second pod read %r, want %r" % (out[1], token)
            with open(img, "rb") as f:
                on_disk = f.read(len(token)).decode(errors="replace")
            assert on_disk == token, "the host's device holds %r" % on_disk
            return "%s: written by pod blk-writer, read back by pod blk-reader, on the host's " \
                "device" % dev
        self.check("volumes: a block device written in one pod is read in the next",
                   block_volume, needs=("pod",))

        def shared_pidns():
            # shareProcessNamespace: the kubelet asks pid POD for the pod and every container.
            ns = {"network": "POD", "pid": "POD", "ipc": "POD"}
            name = "pidns-" + self.pod_uid[4:]
            cfg = self.pod_config(name)
            cfg["linux"]["security_context"]["namespace_options"] = ns
            pod = self.cri.RunPodSandbox(config=cfg, runtime_handler=self.handler,
                                         _timeout=self.args.call_timeout *
                                         self.args.time_scale).pod_sandbox_id
            try:
                cids = []
                for cname, cmd in (("sleeper", ["sleep", "3600"]),
                                   ("looker", ["sleep", "3601"])):
                    ccfg = self.container_config(cname, cmd)
                    ccfg["linux"]["security_context"]["namespace_options"] = ns
                    cid = self.cri.CreateContainer(pod_sandbox_id=pod, config=ccfg,
                                                   sandbox_config=cfg).container_id
                    self.cri.StartContainer(container_id=cid)
                    cids.append(cid)
                for cid in cids:
                    self.wait_for("pidns containers running",
                                  lambda: self.status(cid).state == A.CONTAINER_RUNNING, 30)
                r = self.exec_sync(cids[1], ["sh", "-c", "for p in /proc/[0-9]*; do echo "
                                             "${p#/proc/} $(tr '\\0' ' ' < $p/cmdline); done"])
                procs = dict(ln.split(" ", 1) for ln in r.stdout.decode().splitlines()
                             if " " in ln)
                cmdlines = [c.strip() for c in procs.values()]
                assert "sleep 3600" in cmdlines, "the other container's process is not seen: " \
                    "%s" % procs
                init = procs.get("1", "").strip()
                assert "pause" in init, "PID 1 is %r, not the sandbox's pause" % init
            finally:
                self.cri.StopPodSandbox(pod_sandbox_id=pod, _timeout=120 * self.args.time_scale)
                self.cri.RemovePodSandbox(pod_sandbox_id=pod)
            return "PID 1 is %r; the looker sees the sleeper's process among %d" % (
                init, len(procs))
        self.check("pod config: shareProcessNamespace puts the pod's containers in one pid "
                   "namespace", shared_pidns, needs=("pod",))

        def stop_containers():
            done = []
            for key in ("web", "client"):
                if key not in self.state:
                    continue
                cid = self.state[key]
                t0 = time.monotonic()
                self.cri.StopContainer(container_id=cid, timeout=10,
                                       _timeout=60 * self.args.time_scale)
                st = self.status(cid)
                assert st.state == A.CONTAINER_EXITED, A.ContainerState.Name(st.state)
                assert st.finished_at > 0
                # Both trap SIGTERM and exit 0: a 137 means the runtime had to SIGKILL.
                assert st.exit_code == 0, "%s: exit code %d after SIGTERM" % (key, st.exit_code)
                done.append("%s exit %d in %.1fs" % (key, st.exit_code, time.monotonic() - t0))
            assert done, "nothing to stop"
            return ", ".join(done)
        self.check("StopContainer: SIGTERM, containers exit 0", stop_containers, needs=("pod",))

        def remove_containers():
            removed = 0
            for key in ("web", "client", "oneshot", "hog", "sec", "att", "secuser", "seccaps"):
                cid = self.state.get(key) or self.state.get(key + "_created")
                if cid:
                    self.cri.RemoveContainer(container_id=cid)
                    removed += 1
            left = self.cri.ListContainers(
                filter={"pod_sandbox_id": self.state["pod"]}).containers
            assert not left, [c.id for c in left]
            gone = self.state.get("web") or self.state.get("client")
            if gone:
                try:
                    self.status(gone)
                    raise AssertionError("ContainerStatus of a removed container answered")
                except CriError as e:
                    assert e.code.name == "NOT_FOUND", e
            return "%d removed" % removed
        self.check("RemoveContainer: none left", remove_containers, needs=("pod",))

        def stop_pod():
            self.cri.StopPodSandbox(pod_sandbox_id=self.state["pod"],
                                    _timeout=120 * self.args.time_scale)
            st = self.cri.PodSandboxStatus(pod_sandbox_id=self.state["pod"]).status
            assert st.state == A.SANDBOX_NOTREADY, A.PodSandboxState.Name(st.state)
            left = self.cni_results()
            assert not left, "CNI results left after StopPodSandbox: %s" % left
            ipam = os.path.join(self.env["CRI_DIR"], "cni", "ipam", self.env["CRI_NETWORK"])
            if "ip" in self.state:
                assert not os.path.exists(os.path.join(ipam, self.state["ip"])), \
                    "pod IP still allocated in %s" % ipam
            self.state["stopped"] = True
            return "NOTREADY, CNI DEL done, IP released"
        self.check("StopPodSandbox: not ready, network released", stop_pod, needs=("pod",))

        def remove_pod():
            self.cri.RemovePodSandbox(pod_sandbox_id=self.state["pod"])
            items = self.cri.ListPodSandbox().items
            assert not items, [p.id for p in items]
            try:
                self.cri.PodSandboxStatus(pod_sandbox_id=self.state["pod"])
                raise AssertionError("PodSandboxStatus of a removed pod answered")
            except CriError as e:
                assert e.code.name == "NOT_FOUND", e
            if "pod_cgroup" in self.state:
                left = [d for d in glob.glob("/sys/fs/cgroup/*" + self.state["pod_cgroup"]) +
                        glob.glob("/sys/fs/cgroup" + self.state["pod_cgroup"])
                        if os.path.isdir(d)]
                assert not left, "the pod's cgroup is left: %s" % left
                return "no pods left, the pod's host cgroup removed"
            return "no pods left"
        self.check("RemovePodSandbox: none left", remove_pod, needs=("pod",))
        return self.failed == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--handler", required=True, help="CRI runtime handler: runc or kata")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="multiplies every wait (a VM under TCG is slow)")
    ap.add_argument("--call-timeout", type=float, default=120.0)
    args = ap.parse_args()
    s = Scenario(args)
    try:
        s.run()
    finally:
        s.cri.close()
        for dev in s.loop_devices:
            subprocess.run(["losetup", "-d", dev], check=False)
    return 0 if s.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
