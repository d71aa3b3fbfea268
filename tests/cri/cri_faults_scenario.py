#!/usr/bin/python3
"""Fault and endurance checks for the kata handler, run by cri_kata_faults_test.sh.

Runs inside the test's network namespace (cri_setup made it), against the test's containerd,
with runtime handler kata (one VM per pod, our containerd-shim-kata-v2):

  restart   a pod with a running busybox httpd; containerd is stopped (SIGTERM) and started
            again with the same config (lib.sh's cri_containerd_stop/start), as a node's
            containerd restart does; the pod must still be READY, the container RUNNING, the
            same shim and QEMU processes must serve it, its IP must serve the token, ExecSync
            must work; then Stop/Remove of container and pod leave nothing.
  qemu-kill a pod with two running containers; its QEMU (`-name sandbox-<pod id>`) gets
            SIGKILL; every container must reach EXITED with a non-zero exit code in bounded
            time, the pod NOTREADY; StopPodSandbox + RemovePodSandbox leave nothing.
  exec-fds  one long-lived pod, --execs ExecSync calls: the shim's open fds after the last must
            not exceed those after the first.
  cycles    --cycles pod lifecycles in a row (RunPodSandbox, CreateContainer, StartContainer,
            ExecSync, StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox), each
            timed; containerd's open fds after the last cycle vs after the first (slack
            --fd-slack); then nothing of any of the test's pods may be left (processes, taps,
            netns, mounts, cgroups, /run/vc state, CNI cache entries).

Output as cri_scenario.py: one `PASS: name [kata]: detail` / `FAIL: name [kata]: reason` line
per check, informational lines indented; the calling script counts the PASS/FAIL lines.
"""

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cri_client import CriClient, CriError  # noqa: E402
from cri_scenario import CNI_RESULTS, NotRun, Scenario  # noqa: E402

SHIM = "containerd-shim-kata-v2"
TAP_RE = re.compile(r"^tap\S*_kata$")
ID_RE = re.compile(r"[0-9a-f]{64}")
KATA_RUN = "/run/kata-containers"


def read_args(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def alive(pid):
    """True while PID runs (a zombie is dead)."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def mount_points():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            out.append(mp.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\"))
    return out


class Faults(Scenario):
    def __init__(self, args):
        super().__init__(args)
        self.socket = self.env["CRI_SOCKET"]
        self.cri_dir = self.env["CRI_DIR"]
        self.suffix = self.env.get("CRI_ID", "x")
        self.pods = []          # every pod sandbox id the test made
        self.containers = []    # every container id
        self.netns = {}         # pod id -> its netns path (from the verbose PodSandboxStatus)
        self.shim_sockets = {}  # pod id -> the shim's socket path (its -socket argument)
        self.cycle_times = []
        self.tags = {}          # pod id -> the part of the test that made it
        # A normal stop or removal takes about a second: waiting longer only delays the report
        # of one that hangs.
        self.stop_deadline = 30 * args.time_scale

    def report(self, ok, name, detail):
        # A failure naming pods says which part of the test made them.
        if not ok:
            named = [i for i in dict.fromkeys(ID_RE.findall(detail)) if i in self.tags]
            if named:
                detail += " [pods: %s]" % ", ".join(self.name(i) for i in named)
        super().report(ok, name, detail)

    # ---- helpers ----

    def new_client(self):
        """A fresh channel: after containerd restarts, the old one may sit in its reconnect
        backoff."""
        try:
            self.cri.close()
        except Exception:
            pass
        self.cri = CriClient(self.socket, timeout=self.args.call_timeout,
                             build_dir=os.path.join(self.cri_dir, "proto-build"))

    def lib(self, *cmd, timeout=120):
        """Runs a lib.sh function (with the test's CRI_* environment); returns its output."""
        script = '. "$1/lib.sh" || exit 1; shift; "$@"'
        r = subprocess.run(["bash", "-c", script, "lib", HERE] + list(cmd),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        out = r.stdout.decode(errors="replace").strip()
        if r.returncode != 0:
            raise AssertionError("%s failed (status %d): %s" % (" ".join(cmd), r.returncode,
                                                                out))
        return out

    def containerd_pid(self):
        conf = os.path.join(self.cri_dir, "containerd.toml")
        for pid in all_pids():
            a = read_args(pid)
            if a and os.path.basename(a[0]) == "containerd" and conf in a and alive(pid):
                return pid
        return None

    def qemu_pids(self, pod):
        """QEMU processes of the pod: found by their `-name sandbox-<pod id>` argument."""
        want = "sandbox-" + pod
        out = []
        for pid in all_pids():
            a = read_args(pid)
            if any(a[i] == "-name" and a[i + 1] == want for i in range(len(a) - 1)) \
                    and alive(pid):
                out.append(pid)
        return out

    def shim_pids(self, pod=None):
        """containerd-shim-kata-v2 processes of our containerd (of POD's sandbox if given)."""
        out = []
        for pid in all_pids():
            a = read_args(pid)
            if not a or os.path.basename(a[0]) != SHIM or not alive(pid):
                continue
            pairs = {a[i]: a[i + 1] for i in range(len(a) - 1) if a[i].startswith("-")}
            if pairs.get("-address") != self.socket:
                continue
            if pod is None or pairs.get("-id") == pod:
                out.append(pid)
        return out

    def pids_naming(self, ids):
        """Live processes (other than us) whose command line names one of IDS."""
        out = []
        for pid in all_pids():
            if pid == os.getpid():
                continue
            cmd = " ".join(read_args(pid))
            if cmd and any(i in cmd for i in ids) and alive(pid):
                out.append("%d(%s)" % (pid, cmd[:90]))
        return out

    def taps_in(self, netns):
        """tap*_kata links in the network namespace file NETNS."""
        r = subprocess.run(["nsenter", "--net=" + netns, "ip", "-o", "link", "show"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if r.returncode != 0:
            raise OSError("ip link in %s: %s" % (netns, r.stderr.decode().strip()))
        names = []
        for line in r.stdout.decode().splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                name = parts[1].strip().split("@")[0]
                if TAP_RE.match(name):
                    names.append(name)
        return names

    def pod_netns_dir(self):
        return os.path.join(self.cri_dir, "state", "io.containerd.grpc.v1.cri", "netns")

    def pod_config(self, tag):
        name = "kcri-%s-%s" % (tag, self.suffix)
        return {
            "metadata": {"name": name, "uid": "uid-%s-%s" % (tag, self.suffix),
                         "namespace": "kcri-faults", "attempt": 0},
            "hostname": ("kcri-" + tag)[:63],
            "log_directory": os.path.join(self.env["CRI_LOG_DIR"], name),
            "labels": {"kcri-test": "faults", "kcri-part": tag},
            "linux": {
                "cgroup_parent": self.env["CRI_CGROUP_PARENT"],
                "security_context": {
                    "namespace_options": {"network": "POD", "pid": "CONTAINER", "ipc": "POD"},
                },
            },
        }

    def run_pod(self, tag):
        pod = self.cri.RunPodSandbox(config=self.pod_config(tag), runtime_handler=self.handler,
                                     _timeout=self.args.call_timeout * self.args.time_scale
                                     ).pod_sandbox_id
        assert pod, "RunPodSandbox returned no id"
        self.pods.append(pod)
        self.tags[pod] = tag
        return pod

    def record_pod(self, pod):
        """Notes the pod's netns and its shim's socket (for the leftover checks)."""
        info = json.loads(self.cri.PodSandboxStatus(pod_sandbox_id=pod, verbose=True)
                          .info.get("info", "{}"))
        for ns in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network" and ns.get("path"):
                self.netns[pod] = ns["path"]
        for pid in self.shim_pids(pod):
            a = read_args(pid)
            for i in range(len(a) - 1):
                if a[i] == "-socket" and a[i + 1].startswith("unix://"):
                    self.shim_sockets[pod] = a[i + 1][len("unix://"):]
        return info

    def start_container(self, pod, tag, name, command):
        cid = self.cri.CreateContainer(pod_sandbox_id=pod,
                                       config=self.container_config(name, command),
                                       sandbox_config=self.pod_config(tag),
                                       _timeout=self.args.call_timeout * self.args.time_scale
                                       ).container_id
        assert cid, "CreateContainer returned no id"
        self.containers.append(cid)
        self.cri.StartContainer(container_id=cid,
                                _timeout=self.args.call_timeout * self.args.time_scale)
        return cid

    def web_command(self):
        # httpd as PID 1 would ignore SIGTERM (no handler), so a shell with a trap stays PID 1.
        return ["/bin/sh", "-c",
                "trap 'exit 0' TERM; mkdir -p /www; echo %s > /www/index.html; "
                "httpd -f -p 8080 -h /www & wait" % self.token]

    def sleeper_command(self):
        return ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]

    def running(self, cid):
        return self.status(cid).state == self.api.CONTAINER_RUNNING

    def pod_state(self, pod):
        return self.api.PodSandboxState.Name(
            self.cri.PodSandboxStatus(pod_sandbox_id=pod).status.state)

    def remove_pod(self, pod, containers=()):
        """StopContainer/RemoveContainer of CONTAINERS, then StopPodSandbox, RemovePodSandbox."""
        for cid in containers:
            self.cri.StopContainer(container_id=cid, timeout=10,
                                   _timeout=10 + self.stop_deadline)
            self.cri.RemoveContainer(container_id=cid, _timeout=self.stop_deadline)
        self.cri.StopPodSandbox(pod_sandbox_id=pod, _timeout=self.stop_deadline)
        self.cri.RemovePodSandbox(pod_sandbox_id=pod, _timeout=self.stop_deadline)

    def best_effort_remove(self, pod):
        """After a failed check: the pod goes, so that later parts start clean."""
        try:
            for c in self.cri.ListContainers(filter={"pod_sandbox_id": pod}).containers:
                try:
                    self.cri.StopContainer(container_id=c.id, timeout=0, _timeout=30)
                    self.cri.RemoveContainer(container_id=c.id, _timeout=30)
                except CriError as e:
                    print("  cleanup of container %s: %s" % (c.id[:12], e), flush=True)
            self.cri.StopPodSandbox(pod_sandbox_id=pod, _timeout=30)
            self.cri.RemovePodSandbox(pod_sandbox_id=pod, _timeout=30)
        except CriError as e:
            print("  cleanup of pod %s: %s" % (self.name(pod), e), flush=True)

    def name(self, pod):
        return "%s (%s)" % (pod[:12], self.tags.get(pod, "?"))

    def pod_leftovers(self, pod):
        """What is left of a removed pod: a list of descriptions (empty: nothing)."""
        left = []
        q = self.qemu_pids(pod)
        if q:
            left.append("QEMU %s" % q)
        s = self.shim_pids(pod)
        if s:
            left.append("shim %s" % s)
        procs = [p for p in self.pids_naming([pod])
                 if int(p.split("(")[0]) not in q + s]
        if procs:
            left.append("processes naming the pod: %s" % procs)
        for p in ("/run/vc/sbs/" + pod, "/run/vc/vm/" + pod,
                  "%s/shared/sandboxes/%s" % (KATA_RUN, pod)):
            if os.path.lexists(p):
                left.append(p)
        mps = [m for m in mount_points() if pod in m]
        if mps:
            left.append("%d mounts naming the pod, e.g. %s" % (len(mps), mps[0]))
        ns = self.netns.get(pod)
        if ns and os.path.lexists(ns):
            taps = []
            try:
                taps = self.taps_in(ns)
            except OSError:
                pass
            left.append("pod netns %s%s" % (ns, " with %s" % taps if taps else ""))
        sock = self.shim_sockets.get(pod)
        if sock and os.path.lexists(sock):
            left.append("shim socket %s" % sock)
        cni = self.cni_entries([pod])
        if cni:
            left.append("CNI cache %s" % cni)
        return left

    def wait_nothing_left(self, pod, seconds=30):
        """Waits (bounded) until nothing of POD is left; returns the seconds it took."""
        t0 = time.monotonic()
        last = []

        def gone():
            last[:] = self.pod_leftovers(pod)
            return not last
        try:
            self.wait_for("nothing left of pod %s" % pod[:12], gone, seconds, interval=0.2)
        except AssertionError:
            raise AssertionError("left of pod %s %s after %.0fs: %s" % (
                pod, self.tags.get(pod, "?"), time.monotonic() - t0, "; ".join(last)))
        return time.monotonic() - t0

    def cni_entries(self, pods):
        try:
            names = os.listdir(CNI_RESULTS)
        except FileNotFoundError:
            return []
        net = self.env["CRI_NETWORK"]
        return sorted(n for n in names
                      if any(n.startswith("%s-%s" % (net, p)) or
                             n.startswith("cni-loopback-%s" % p) for p in pods))

    def containerd_errors(self, ids, n=2):
        """The last N level=error lines of containerd.log naming one of IDS, shortened."""
        try:
            with open(os.path.join(self.cri_dir, "containerd.log"), errors="replace") as f:
                lines = [ln for ln in f if "level=error" in ln and any(i in ln for i in ids)]
        except OSError:
            return ""
        out = []
        for ln in lines[-n:]:
            m = re.search(r'msg="(.*?)(?<!\\)"', ln)
            e = re.search(r'error="(.*?)(?<!\\)"', ln)
            msg = re.sub(r"&TaskExit\{[^}]*\}", "&TaskExit{...}", m.group(1) if m else ln)
            out.append("%s: %s" % (msg[:80], (e.group(1) if e else "")[:260]))
        return (" | containerd.log: " + " || ".join(out)) if out else ""

    def shim_log_lines_since_restart(self, pod):
        """Lines the pod's shim logged into containerd.log after the last restart marker."""
        try:
            with open(os.path.join(self.cri_dir, "containerd.log"), errors="replace") as f:
                text = f.read()
        except OSError:
            return 0
        text = text.rsplit("---- cri_containerd_start", 1)[-1]
        return sum(1 for ln in text.splitlines()
                   if ln.startswith("{") and SHIM in ln and pod in ln)

    # ---- 1. containerd restarted under a running pod ----

    def part_restart(self):
        A = self.api
        st = {}

        def setup():
            t0 = time.monotonic()
            pod = self.run_pod("restart")
            st["pod"] = pod
            self.record_pod(pod)
            cid = self.start_container(pod, "restart", "web", self.web_command())
            st["web"] = cid
            self.wait_for("web running", lambda: self.running(cid), 30)
            ip = self.cri.PodSandboxStatus(pod_sandbox_id=pod).status.network.ip
            assert ip, "no pod IP"
            st["ip"] = ip
            url = "http://%s:8080/index.html" % ip
            body = self.wait_for(url, lambda: self.http_get(url), 30)
            assert body.strip() == self.token, body
            st["qemu"] = self.qemu_pids(pod)
            st["shim"] = self.shim_pids(pod)
            assert len(st["qemu"]) == 1, "QEMU processes of the pod: %s" % st["qemu"]
            assert len(st["shim"]) == 1, "shim processes of the pod: %s" % st["shim"]
            st["ready"] = True
            return "pod %s (%s) web %s serves the token, QEMU pid %d, shim pid %d, in %.1fs" % (
                pod[:12], ip, cid[:12], st["qemu"][0], st["shim"][0], time.monotonic() - t0)
        self.check("restart: pod with a running busybox httpd", setup)

        def stop():
            if "ready" not in st:
                raise NotRun("no pod")
            old = self.containerd_pid()
            assert old, "no containerd process found"
            st["containerd"] = old
            t0 = time.monotonic()
            self.lib("cri_containerd_stop", "TERM")
            took = time.monotonic() - t0
            assert not alive(old), "containerd %d still runs" % old
            st["stopped"] = True
            time.sleep(1)  # let a shim that would die with containerd do so
            dead = [p for p in st["qemu"] + st["shim"] if not alive(p)]
            assert not dead, "with containerd gone, these died: %s (QEMU %s, shim %s)" % (
                dead, st["qemu"], st["shim"])
            return "containerd %d exited %.1fs after SIGTERM; shim %d and QEMU %d still run" % (
                old, took, st["shim"][0], st["qemu"][0])
        self.check("restart: containerd stopped with SIGTERM, the shim and QEMU go on", stop)

        def start():
            if "stopped" not in st:
                raise NotRun("containerd was not stopped")
            t0 = time.monotonic()
            self.lib("cri_containerd_start")
            self.new_client()
            new = self.containerd_pid()
            assert new and new != st["containerd"], (st["containerd"], new)
            v = self.cri.Version(version="v1")
            st["restarted"] = True
            return "containerd %d, CRI %s answers %.1fs after the start" % (
                new, v.runtime_api_version, time.monotonic() - t0)
        self.check("restart: containerd started again with the same config", start)

        def still_ready():
            if "restarted" not in st:
                raise NotRun("containerd was not restarted")
            s = self.cri.PodSandboxStatus(pod_sandbox_id=st["pod"]).status
            assert s.state == A.SANDBOX_READY, "pod %s" % A.PodSandboxState.Name(s.state)
            c = self.status(st["web"])
            assert c.state == A.CONTAINER_RUNNING, "container %s (exit code %d, reason %r)" % (
                A.ContainerState.Name(c.state), c.exit_code, c.reason)
            items = self.cri.ListPodSandbox(filter={"id": st["pod"]}).items
            assert [p.state for p in items] == [A.SANDBOX_READY], items
            assert s.network.ip == st["ip"], "pod IP %s, was %s" % (s.network.ip, st["ip"])
            return "pod READY (IP %s), container RUNNING" % s.network.ip
        self.check("restart: after it the pod is READY, the container RUNNING", still_ready)

        def same_processes():
            if "restarted" not in st:
                raise NotRun("containerd was not restarted")
            q, s = self.qemu_pids(st["pod"]), self.shim_pids(st["pod"])
            assert q == st["qemu"], "QEMU pids before %s, after %s" % (st["qemu"], q)
            assert s == st["shim"], "shim pids before %s, after %s" % (st["shim"], s)
            return "QEMU %d and shim %d (reconnected: %d shim log lines since the restart)" % (
                q[0], s[0], self.shim_log_lines_since_restart(st["pod"]))
        self.check("restart: the same QEMU and shim serve the pod", same_processes)

        def serves():
            if "restarted" not in st:
                raise NotRun("containerd was not restarted")
            url = "http://%s:8080/index.html" % st["ip"]
            body = self.wait_for(url, lambda: self.http_get(url), 10)
            assert body.strip() == self.token, body
            return "%s -> %s" % (url, body.strip())
        self.check("restart: the pod IP still serves the token", serves)

        def execs():
            if "restarted" not in st:
                raise NotRun("containerd was not restarted")
            r = self.exec_sync(st["web"], ["cat", "/www/index.html"])
            assert r.exit_code == 0 and r.stdout.decode().strip() == self.token, r
            r = self.exec_sync(st["web"], ["sh", "-c", "echo out; echo err >&2; exit 4"])
            assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 4), r
            return "cat /www/index.html -> token; exit code 4 and stdout/stderr kept"
        self.check("restart: ExecSync into the container", execs)

        def teardown():
            if "ready" not in st:
                raise NotRun("no pod")
            t0 = time.monotonic()
            self.cri.StopContainer(container_id=st["web"], timeout=10,
                                   _timeout=10 + self.stop_deadline)
            c = self.status(st["web"])
            assert c.state == A.CONTAINER_EXITED, A.ContainerState.Name(c.state)
            assert c.exit_code == 0, "exit code %d after SIGTERM" % c.exit_code
            self.cri.RemoveContainer(container_id=st["web"])
            self.cri.StopPodSandbox(pod_sandbox_id=st["pod"], _timeout=self.stop_deadline)
            assert self.pod_state(st["pod"]) == "SANDBOX_NOTREADY"
            self.cri.RemovePodSandbox(pod_sandbox_id=st["pod"], _timeout=self.stop_deadline)
            st["removed"] = True
            took = time.monotonic() - t0
            waited = self.wait_nothing_left(st["pod"])
            return "container exit 0, pod removed in %.1fs; nothing left %.1fs later" % (
                took, waited)
        self.check("restart: Stop/Remove of container and pod work and leave nothing",
                   teardown)
        if "pod" in st and "removed" not in st:
            self.best_effort_remove(st["pod"])

    # ---- 2. QEMU killed under a running pod ----

    def part_qemu_kill(self):
        A = self.api
        st = {}

        def setup():
            t0 = time.monotonic()
            pod = self.run_pod("qkill")
            st["pod"] = pod
            self.record_pod(pod)
            st["web"] = self.start_container(pod, "qkill", "web", self.web_command())
            st["client"] = self.start_container(pod, "qkill", "client", self.sleeper_command())
            for k in ("web", "client"):
                self.wait_for(k + " running", lambda k=k: self.running(st[k]), 30)
            st["qemu"] = self.qemu_pids(pod)
            st["shim"] = self.shim_pids(pod)
            assert len(st["qemu"]) == 1, "QEMU processes of the pod: %s" % st["qemu"]
            ns = self.netns.get(pod)
            st["taps"] = self.taps_in(ns) if ns else []
            st["ready"] = True
            return "pod %s, web %s and client %s RUNNING, QEMU pid %d, taps %s, in %.1fs" % (
                pod[:12], st["web"][:12], st["client"][:12], st["qemu"][0], st["taps"],
                time.monotonic() - t0)
        self.check("qemu-kill: pod with two running containers", setup)

        def kill_exits():
            if "ready" not in st:
                raise NotRun("no pod")
            q = st["qemu"][0]
            os.kill(q, 9)
            t0 = time.monotonic()
            st["killed"] = t0
            done = {}

            def all_exited():
                for k in ("web", "client"):
                    if k not in done:
                        s = self.status(st[k])
                        if s.state == A.CONTAINER_EXITED:
                            done[k] = (s.exit_code, s.reason, time.monotonic() - t0)
                return len(done) == 2
            try:
                self.wait_for("every container EXITED", all_exited, 15)
            except AssertionError as e:
                states = {k: A.ContainerState.Name(self.status(st[k]).state)
                          for k in ("web", "client")}
                raise AssertionError("%s; states %.0fs after kill -9 of QEMU %d: %s%s" % (
                    e, time.monotonic() - t0, q, states,
                    self.containerd_errors([st["web"], st["client"]])))
            zero = [k for k, v in done.items() if v[0] == 0]
            assert not zero, "exit code 0 after the VM died: %s" % {k: done[k] for k in zero}
            return "kill -9 QEMU %d; %s" % (q, ", ".join(
                "%s EXITED in %.1fs (exit code %d, reason %s)" % (k, v[2], v[0], v[1])
                for k, v in sorted(done.items())))
        self.check("qemu-kill: every container reaches EXITED with a non-zero exit code",
                   kill_exits)

        def notready():
            if "killed" not in st:
                raise NotRun("QEMU was not killed")
            try:
                self.wait_for("pod NOTREADY",
                              lambda: self.pod_state(st["pod"]) == "SANDBOX_NOTREADY", 15)
            except AssertionError as e:
                raise AssertionError("%s: %s %.0fs after the kill%s" % (
                    e, self.pod_state(st["pod"]), time.monotonic() - st["killed"],
                    self.containerd_errors([st["pod"]], 1)))
            return "NOTREADY %.1fs after the kill" % (time.monotonic() - st["killed"])
        self.check("qemu-kill: PodSandboxStatus reports NOTREADY", notready)

        def stop_remove():
            if "ready" not in st:
                raise NotRun("no pod")
            t0 = time.monotonic()
            try:
                self.cri.StopPodSandbox(pod_sandbox_id=st["pod"], _timeout=self.stop_deadline)
                self.cri.RemovePodSandbox(pod_sandbox_id=st["pod"], _timeout=self.stop_deadline)
            except CriError as e:
                raise AssertionError("%s after %.0fs%s" % (
                    e, time.monotonic() - t0, self.containerd_errors([st["pod"]], 1)))
            st["removed"] = True
            left = self.cri.ListContainers(filter={"pod_sandbox_id": st["pod"]}).containers
            assert not left, "containers left: %s" % [c.id for c in left]
            try:
                self.cri.PodSandboxStatus(pod_sandbox_id=st["pod"])
                raise AssertionError("PodSandboxStatus of the removed pod answered")
            except CriError as e:
                assert e.code.name == "NOT_FOUND", e
            return "in %.1fs; ListContainers empty, PodSandboxStatus NOT_FOUND" % (
                time.monotonic() - t0)
        self.check("qemu-kill: StopPodSandbox + RemovePodSandbox", stop_remove)

        def nothing_left():
            if "removed" not in st:
                raise NotRun("the pod was not removed")
            waited = self.wait_nothing_left(st["pod"])
            return ("no QEMU, shim, pod netns (taps were %s), shim socket, /run/vc/{sbs,vm}/%s, "
                    "%s/shared/sandboxes/%s or its mounts, CNI cache entries (%.1fs)" % (
                        st["taps"], st["pod"][:12], KATA_RUN, st["pod"][:12], waited))
        self.check("qemu-kill: nothing left of the pod", nothing_left)
        if "pod" in st and "removed" not in st:
            self.best_effort_remove(st["pod"])

    # ---- 3a. the shim's fds over many ExecSync calls ----

    def part_exec_fds(self):
        st = {}
        n = self.args.execs

        def settled_fds(pid, floor=None):
            """The shim's fd count once transient ones are closed: waits up to 5 s for it to
            drop to FLOOR."""
            time.sleep(0.5)
            count = fd_count(pid)
            deadline = time.monotonic() + 5
            while floor is not None and count > floor and time.monotonic() < deadline:
                time.sleep(0.25)
                count = fd_count(pid)
            return count

        def execs():
            pod = self.run_pod("execfds")
            st["pod"] = pod
            self.record_pod(pod)
            cid = self.start_container(pod, "execfds", "sleeper", self.sleeper_command())
            st["cid"] = cid
            self.wait_for("sleeper running", lambda: self.running(cid), 30)
            shims = self.shim_pids(pod)
            assert len(shims) == 1, "shim processes of the pod: %s" % shims
            shim = shims[0]
            counts = {}
            times = []
            for i in range(1, n + 1):
                t0 = time.monotonic()
                r = self.exec_sync(cid, ["echo", "ok"])
                times.append(time.monotonic() - t0)
                assert r.exit_code == 0 and r.stdout == b"ok\n", "exec %d: %s" % (i, r)
                if i == 1:
                    counts[1] = settled_fds(shim)
            counts[n] = settled_fds(shim, floor=counts[1])
            print("  exec-fds: shim %d open fds after ExecSync #1: %d, after #%d: %d" % (
                shim, counts[1], n, counts[n]), flush=True)
            fds = sorted(os.listdir("/proc/%d/fd" % shim), key=int)
            assert counts[n] <= counts[1], (
                "the shim's open fds grew from %d (after ExecSync #1) to %d (after #%d); "
                "now: %s" % (counts[1], counts[n], n,
                             ", ".join("%s->%s" % (f, os.readlink("/proc/%d/fd/%s" % (shim, f)))
                                       for f in fds)))
            return "shim %d fds: %d after ExecSync #1, %d after #%d (ExecSync median %.2fs)" % (
                shim, counts[1], counts[n], n, statistics.median(times))
        self.check("exec-fds: %d ExecSync into one pod, the shim's open fds do not grow" % n,
                   execs)

        def remove():
            if "cid" not in st:
                raise NotRun("no pod")
            self.remove_pod(st["pod"], [st["cid"]])
            st["removed"] = True
            self.wait_nothing_left(st["pod"])
            return "pod removed, nothing left"
        self.check("exec-fds: the pod removed, nothing left", remove)
        if "pod" in st and "removed" not in st:
            self.best_effort_remove(st["pod"])

    # ---- 3b. create/start/exec/stop/remove cycles ----

    def part_cycles(self):
        n = self.args.cycles
        st = {"fds": {}}

        def cycles():
            for i in range(1, n + 1):
                steps = []
                pod = cid = None
                step = "RunPodSandbox"
                t0 = time.monotonic()
                try:
                    pod = self.run_pod("cycle%d" % i)
                    self.record_pod(pod)
                    steps.append(("run", time.monotonic() - t0))
                    step = "CreateContainer/StartContainer"
                    cid = self.start_container(pod, "cycle%d" % i, "c", self.sleeper_command())
                    steps.append(("create+start", time.monotonic() - t0 - sum(
                        s[1] for s in steps)))
                    step = "ExecSync"
                    r = self.exec_sync(cid, ["echo", "ok"])
                    assert r.exit_code == 0 and r.stdout == b"ok\n", r
                    steps.append(("exec", time.monotonic() - t0 - sum(s[1] for s in steps)))
                    step = "StopContainer/RemoveContainer/StopPodSandbox/RemovePodSandbox"
                    self.remove_pod(pod, [cid])
                    steps.append(("stop+remove", time.monotonic() - t0 - sum(
                        s[1] for s in steps)))
                    step = "waiting for nothing left"
                    t1 = time.monotonic()
                    self.wait_nothing_left(pod)
                    steps.append(("gone", time.monotonic() - t1))
                except (AssertionError, CriError, OSError) as e:
                    if pod:
                        self.best_effort_remove(pod)
                    raise AssertionError("cycle %d/%d, %s (pod %s): %s: %s" % (
                        i, n, step, pod, type(e).__name__, e))
                took = time.monotonic() - t0
                self.cycle_times.append(took)
                print("  cycle %d/%d: %.2fs (%s)" % (i, n, took, ", ".join(
                    "%s %.2f" % s for s in steps)), flush=True)
                if i == 1 or i == n:
                    pid = self.containerd_pid()
                    assert pid, "no containerd process after cycle %d" % i
                    st["fds"][i] = (pid, fd_count(pid))
            t = self.cycle_times
            st["done"] = True
            return "%d cycles in %.1fs: per cycle min %.2fs, median %.2fs, max %.2fs" % (
                n, sum(t), min(t), statistics.median(t), max(t))
        self.check("cycles: %d x RunPodSandbox/CreateContainer/StartContainer/ExecSync/"
                   "StopContainer/RemoveContainer/StopPodSandbox/RemovePodSandbox" % n, cycles)

        def fds():
            if "done" not in st:
                raise NotRun("the cycles did not all run")
            (p1, c1), (pn, cn) = st["fds"][1], st["fds"][n]
            print("  cycles: containerd %d open fds after cycle 1: %d, after cycle %d: %d" % (
                p1, c1, n, cn), flush=True)
            assert p1 == pn, "containerd changed pid (%d -> %d)" % (p1, pn)
            assert cn <= c1 + self.args.fd_slack, \
                "containerd's open fds grew from %d (cycle 1) to %d (cycle %d), slack %d" % (
                    c1, cn, n, self.args.fd_slack)
            return "containerd %d: %d fds after cycle 1, %d after cycle %d (slack +%d)" % (
                p1, c1, cn, n, self.args.fd_slack)
        self.check("cycles: containerd's open fds do not grow", fds)

    # ---- nothing left of any pod of the test ----

    def part_leftovers(self):
        pods = list(self.pods)
        ids = pods + self.containers

        def no_pods():
            items = self.cri.ListPodSandbox().items
            cs = self.cri.ListContainers().containers
            assert not items and not cs, "pods %s, containers %s" % (
                [p.id for p in items], [c.id for c in cs])
            return "ListPodSandbox and ListContainers empty (%d pods made)" % len(pods)
        self.check("leftovers: no pods or containers in the CRI", no_pods)

        def no_qemu():
            q = [p for pod in pods for p in self.qemu_pids(pod)]
            assert not q, "QEMU processes of the test's pods: %s" % q
            other = self.pids_naming(ids)
            assert not other, "processes naming the test's pods/containers: %s" % other
            return "none of %d pods" % len(pods)
        self.check("leftovers: no QEMU (or other process) of the test's pods", no_qemu)

        def no_shim():
            s = self.shim_pids()
            assert not s, "%s processes of our containerd: %s" % (
                SHIM, ["%d %s" % (p, " ".join(read_args(p))[:120]) for p in s])
            socks = [p for p in self.shim_sockets.values() if os.path.lexists(p)]
            assert not socks, "shim sockets left: %s" % socks
            return "no %s with -address %s; %d shim sockets gone" % (
                SHIM, self.socket, len(self.shim_sockets))
        self.check("leftovers: no containerd-shim-kata-v2 process", no_shim)

        def no_taps():
            host = self.env.get("CRI_HOST_NETNS_PID") or str(os.getppid())
            where = {"host (the test script's netns)": "/proc/%s/ns/net" % host,
                     "test netns " + self.env["CRI_NETNS"]: "/run/netns/" + self.env["CRI_NETNS"]}
            for p in glob.glob(os.path.join(self.pod_netns_dir(), "*")) + \
                    list(self.netns.values()):
                if os.path.lexists(p):
                    where["pod netns " + p] = p
            found = {}
            for name, path in where.items():
                taps = self.taps_in(path)
                if taps:
                    found[name] = taps
            assert not found, "tap*_kata links: %s" % found
            return "none in %s" % ", ".join(sorted(where))
        self.check("leftovers: no tap*_kata link", no_taps)

        def no_netns():
            left = [p for p in self.netns.values() if os.path.lexists(p)]
            left += [p for p in glob.glob(os.path.join(self.pod_netns_dir(), "*"))
                     if p not in left]
            assert not left, "pod netns left: %s" % left
            return "the %d pods' netns (under %s) are gone" % (len(self.netns),
                                                               self.pod_netns_dir())
        self.check("leftovers: no netns of the test's pods", no_netns)

        def no_mounts():
            mps = mount_points()
            ours = [m for m in mps if (m == KATA_RUN or m.startswith(KATA_RUN + "/"))
                    and any(i in m for i in ids)]
            under_dir = [m for m in mps if m == self.cri_dir or
                         m.startswith(self.cri_dir + "/")]
            assert not ours and not under_dir, "mounts: %s" % (ours + under_dir)[:10]
            foreign = [m for m in mps if m.startswith(KATA_RUN + "/") and m not in ours]
            return "none under %s for the test's pods, none under %s%s" % (
                KATA_RUN, self.cri_dir,
                (" (%d of other sandboxes under %s)" % (len(foreign), KATA_RUN))
                if foreign else "")
        self.check("leftovers: no mounts under %s or the test dir" % KATA_RUN, no_mounts)

        def no_cgroups():
            parent = self.env["CRI_CGROUP_PARENT"]
            found = []
            for base in ["/sys/fs/cgroup"] + glob.glob("/sys/fs/cgroup/*/"):
                d = os.path.join(base, parent.lstrip("/"))
                if os.path.isdir(d):
                    subs = [e for e in os.listdir(d) if os.path.isdir(os.path.join(d, e))]
                    if subs:
                        found.append("%s: %s" % (d, subs[:5]))
            # Any cgroup named after a pod or container of the test, wherever it is.
            idset = set(ids)
            for root, dirs, _ in os.walk("/sys/fs/cgroup"):
                for d in dirs:
                    if any(m in idset for m in ID_RE.findall(d)):
                        found.append(os.path.join(root, d))
            assert not found, "cgroups: %s" % found[:10]
            return "no cgroup below %s or named after the test's %d pods/containers" % (
                parent, len(ids))
        self.check("leftovers: no cgroups made for the pods", no_cgroups)

        def no_vc():
            left = [p for pod in pods for p in ("/run/vc/sbs/" + pod, "/run/vc/vm/" + pod,
                                                "%s/shared/sandboxes/%s" % (KATA_RUN, pod))
                    if os.path.lexists(p)]
            assert not left, "left: %s" % left
            return "none of /run/vc/sbs/<id>, /run/vc/vm/<id>, %s/shared/sandboxes/<id>" \
                % KATA_RUN
        self.check("leftovers: no /run/vc/sbs, /run/vc/vm entries of the test's pods", no_vc)

        def no_cni():
            left = self.cni_entries(pods)
            net = self.env["CRI_NETWORK"]
            try:
                left += sorted(n for n in os.listdir(CNI_RESULTS)
                               if n.startswith(net + "-") and n not in left)
            except FileNotFoundError:
                pass
            ipam = os.path.join(self.cri_dir, "cni", "ipam", net)
            ips = []
            if os.path.isdir(ipam):
                ips = [f for f in os.listdir(ipam) if f != "lock" and
                       not f.startswith("last_reserved_ip")]
            assert not left and not ips, "CNI cache %s, IPs still allocated %s" % (left, ips)
            return "no %s entries, no IP allocated in %s" % (CNI_RESULTS, ipam)
        self.check("leftovers: no CNI cache entries", no_cni)

    def run(self):
        parts = {"restart": self.part_restart, "qemu-kill": self.part_qemu_kill,
                 "exec-fds": self.part_exec_fds, "cycles": self.part_cycles}
        for name in self.args.parts.split(","):
            t0 = time.monotonic()
            parts[name]()
            print("  %s: %.1fs" % (name, time.monotonic() - t0), flush=True)
        self.part_leftovers()
        return self.failed == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--handler", default="kata")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="multiplies every wait (a VM under TCG is slow)")
    ap.add_argument("--call-timeout", type=float, default=120.0)
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--execs", type=int, default=30)
    ap.add_argument("--fd-slack", type=int, default=5)
    ap.add_argument("--parts", default="restart,qemu-kill,exec-fds,cycles",
                    help="comma-separated subset of restart,qemu-kill,exec-fds,cycles")
    args = ap.parse_args()
    if args.cycles < 1 or args.execs < 1:
        ap.error("--cycles and --execs must be at least 1")
    s = Faults(args)
    try:
        s.run()
    finally:
        s.cri.close()
    return 0 if s.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
