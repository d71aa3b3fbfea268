#!/usr/bin/python3
"""bench/cri/driver.py: the measuring half of bench/cri/run.sh (which sets up the world and
runs this inside the CRI test's network namespace; not meant to be run by hand).

Talks CRI to the test's containerd with tests/cri/cri_client.py and reads the host's /proc (the
netns is a network namespace only: same pid namespace, same /proc). A "pod start" is
RunPodSandbox + CreateContainer + StartContainer (busybox `sleep`) until ContainerStatus says
CONTAINER_RUNNING, timed with time.monotonic() around the calls.

  1. serial: -n rounds, each a kata pod start, a runc pod start and one bare VM boot (the floor
     command given after --floor, printing floor_seconds=...), the order rotating each round;
     every pod is removed (and its shim waited for) before the next start. The CPU a start
     costs is read when the container is RUNNING: utime+stime (+cutime+cstime, their reaped
     children) of the pod's shim and of every process under it (QEMU for kata; pause and the
     container for runc); containerd's own share (+ its reaped children: the CNI plugins and
     the short-lived `shim start`) is the difference of its counters around the start.
  2. memory: one idle pod per handler, PSS/RSS from /proc/PID/smaps_rollup after --settle s.
  3. parallel: P threads (one CriClient, i.e. one gRPC channel, each), released together by a
     barrier; wall time from the first request to the last container RUNNING; then, with the
     P pods idle for --settle s, their PSS per pod.
Prints each measurement as it goes, then the summary. Exits 1 if any pod start failed.
"""

import argparse
import os
import re
import subprocess
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "cri"))
from cri_client import CriClient, CriError  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
ENV = os.environ


# ---- /proc ----

def read_stat(pid):
    """(ppid, comm, own cpu s, reaped children's cpu s) of PID, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    f = s[s.rindex(")") + 2:].split()
    # after "pid (comm) ": state ppid ... utime(14) stime(15) cutime(16) cstime(17)
    return int(f[1]), comm, (int(f[11]) + int(f[12])) / CLK, (int(f[13]) + int(f[14])) / CLK


def proc_table():
    """{pid: (ppid, comm)} of every process."""
    t = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = read_stat(int(d))
            if st:
                t[int(d)] = (st[0], st[1])
    return t


def descendants(pid, table):
    kids = {}
    for p, (pp, _) in table.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return sorted(out)


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def mem_kib(pid):
    """(rss, pss) in KiB from smaps_rollup, or None."""
    rss = pss = None
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        return None
    return (rss, pss) if rss is not None and pss is not None else None


def containerd_pid():
    conf = os.path.join(ENV["CRI_DIR"], "containerd.toml")
    for p, (_, comm) in proc_table().items():
        if comm == "containerd" and conf in cmdline(p):
            return p
    raise RuntimeError("the test's containerd (--config %s) is not running" % conf)


def cpu_total(pid):
    st = read_stat(pid)
    return (st[2] + st[3]) if st else 0.0


def shim_pid(sid):
    """The long-lived shim serving sandbox SID: DIR/state/.../<sid>/shim.pid (kata's and runc's
    shims both write it), else the process whose command line names `-id SID` and is not a
    `start`."""
    path = os.path.join(ENV["CRI_DIR"], "state", "io.containerd.runtime.v2.task", "k8s.io", sid,
                        "shim.pid")
    try:
        with open(path) as f:
            pid = int(f.read().strip())
        if "-id " + sid in cmdline(pid):
            return pid
    except (OSError, ValueError):
        pass
    for p in proc_table():
        c = cmdline(p)
        if "containerd-shim" in c and ("-id " + sid) in c and not c.endswith(" start"):
            return p
    return None


class PodProcs:
    """The host processes of one pod: its shim and everything under it, by kind."""

    def __init__(self, sid, table=None):
        self.sid = sid
        self.shim = shim_pid(sid)
        if self.shim is None:
            raise RuntimeError("no shim process found for sandbox %s" % sid)
        table = table or proc_table()
        self.comm = {p: table.get(p, (0, "?"))[1] for p in [self.shim] + descendants(self.shim, table)}
        self.kids = descendants(self.shim, table)

    def kind(self, pid):
        if pid == self.shim:
            return "shim"
        c = self.comm.get(pid, "?")
        return "qemu" if c.startswith("qemu") else c

    def cpu(self):
        """{kind: cpu seconds} over the shim and its descendants (own + reaped children)."""
        out = {}
        for p in [self.shim] + self.kids:
            k = self.kind(p)
            out[k] = out.get(k, 0.0) + cpu_total(p)
        return out

    def mem(self):
        """{kind: (rss KiB, pss KiB)}."""
        out = {}
        for p in [self.shim] + self.kids:
            m = mem_kib(p)
            if m:
                k = self.kind(p)
                r, s = out.get(k, (0, 0))
                out[k] = (r + m[0], s + m[1])
        return out


# ---- statistics and printing ----

def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def stats_line(name, unit, values, fmt="%.3f"):
    if not values:
        return "%-46s (no values)" % name
    s = sorted(values)
    f = "%-46s median " + fmt + " %s  (min " + fmt + ", max " + fmt + ", n=%d)"
    return f % (name, median(s), unit, s[0], s[-1], len(s))


def out(line=""):
    print(line, flush=True)


# ---- pods ----

class StartError(Exception):
    def __init__(self, step, err, sid=None):
        super().__init__("%s: %s" % (step, err))
        self.step, self.err, self.sid = step, err, sid


class Bench:
    def __init__(self, args):
        self.args = args
        self.socket = ENV["CRI_SOCKET"]
        self.build_dir = os.path.join(ENV["CRI_DIR"], "proto-build")
        self.cri = self.client()
        self.api = self.cri.api
        self.seq = 0
        self.lock = threading.Lock()
        self.failures = []
        self.kata_sids_serial = []
        self.kata_sids_parallel = []
        self.nproc = len(os.sched_getaffinity(0))

    def client(self):
        c = CriClient(self.socket, timeout=self.args.call_timeout, build_dir=self.build_dir)
        c.Version(version="v1")  # connect now, not inside a timed start
        return c

    def configs(self, handler):
        with self.lock:
            self.seq += 1
            n = self.seq
        name = "kbench-%s-%d" % (handler, n)
        uid = "uid-%s-%s" % (ENV.get("CRI_ID", "x"), name)
        pod = {
            "metadata": {"name": name, "uid": uid, "namespace": "kbench", "attempt": 0},
            "hostname": name,
            "log_directory": os.path.join(ENV["CRI_LOG_DIR"], name),
            "labels": {"kbench": "1"},
            "linux": {
                "cgroup_parent": ENV["CRI_CGROUP_PARENT"],
                "security_context": {
                    "namespace_options": {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}},
            },
        }
        ctr = {
            "metadata": {"name": "sleep", "attempt": 0},
            "image": {"image": ENV["CRI_BUSYBOX_IMAGE"]},
            "command": ["sleep", "3600"],
            "log_path": "sleep/0.log",
            "linux": {"security_context": {"namespace_options": {
                "network": "POD", "pid": "CONTAINER", "ipc": "POD"}}},
        }
        return pod, ctr

    def start_pod(self, cri, handler):
        """One pod start; returns (sid, cid, {step: seconds}, t_start, t_end) (monotonic)."""
        pod, ctr = self.configs(handler)
        A = self.api
        sid = None
        t0 = time.monotonic()
        try:
            step = "RunPodSandbox"
            sid = cri.RunPodSandbox(config=pod, runtime_handler=handler).pod_sandbox_id
            t1 = time.monotonic()
            step = "CreateContainer"
            cid = cri.CreateContainer(pod_sandbox_id=sid, config=ctr,
                                      sandbox_config=pod).container_id
            t2 = time.monotonic()
            step = "StartContainer"
            cri.StartContainer(container_id=cid)
            t3 = time.monotonic()
            step = "ContainerStatus RUNNING"
            deadline = t3 + self.args.call_timeout
            while True:
                st = cri.ContainerStatus(container_id=cid).status
                if st.state == A.CONTAINER_RUNNING:
                    break
                if st.state != A.CONTAINER_CREATED or time.monotonic() > deadline:
                    raise RuntimeError("container %s is %s (reason %r, message %r)" % (
                        cid, A.ContainerState.Name(st.state), st.reason, st.message))
                time.sleep(0.005)
            t4 = time.monotonic()
        except (CriError, RuntimeError) as e:
            raise StartError(step, e, sid) from None
        return sid, cid, {"run-pod": t1 - t0, "create": t2 - t1, "start": t3 - t2,
                          "running": t4 - t3}, t0, t4

    def remove_pods(self, sids):
        """Stops and removes the pods, then waits (up to 60 s) for their shims to exit, so that
        a VM's shutdown does not overlap the next measurement."""
        shims = [p for p in (shim_pid(s) for s in sids) if p]
        for sid in sids:
            for method in ("StopPodSandbox", "RemovePodSandbox"):
                try:
                    self.cri.call(method, pod_sandbox_id=sid)
                except CriError as e:
                    self.fail("%s %s: %s" % (method, sid[:13], e))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alive = [p for p in shims if not _gone(p)]
            if not alive:
                return
            time.sleep(0.05)
        self.fail("shims still running 60 s after RemovePodSandbox: %s" %
                  " ".join("%d(%s)" % (p, cmdline(p)[:80]) for p in alive))

    def fail(self, msg):
        self.failures.append(msg)
        out("  FAILED: %s" % msg)

    # ---- 1. serial ----

    def serial_kata_or_runc(self, handler):
        cd = containerd_pid()
        c0 = cpu_total(cd)
        sid, _, steps, t0, t1 = self.start_pod(self.cri, handler)
        procs = PodProcs(sid)
        cpu = procs.cpu()
        cd_cpu = cpu_total(cd) - c0
        if handler == "kata":
            self.kata_sids_serial.append(sid)
        self.remove_pods([sid])
        return t1 - t0, steps, cpu, cd_cpu

    def floor(self):
        r = subprocess.run(self.args.floor, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        m = re.search(r"^floor_seconds=([0-9.]+)$", r.stdout, re.M)
        if r.returncode != 0 or not m:
            raise RuntimeError("floor command failed (status %d): %s %s" % (
                r.returncode, r.stdout.strip()[-300:], r.stderr.strip()[-500:]))
        return float(m.group(1))

    def serial(self):
        a = self.args
        res = {"kata": [], "runc": [], "floor": [], "ratio": [], "steps": {"kata": [], "runc": []},
               "cpu": {"kata": [], "runc": []}, "cd_cpu": {"kata": [], "runc": []}}
        w_k = self.serial_kata_or_runc("kata")[0]
        self.kata_sids_serial.clear()
        w_c = self.serial_kata_or_runc("runc")[0]
        out("  warm-up (not counted): kata %.3f s, runc %.3f s" % (w_k, w_c))
        orders = (("kata", "runc", "floor"), ("runc", "floor", "kata"), ("floor", "kata", "runc"))
        for r in range(a.runs):
            got = {}
            for v in orders[r % 3]:
                if v == "floor":
                    got[v] = self.floor()
                else:
                    wall, steps, cpu, cd_cpu = self.serial_kata_or_runc(v)
                    got[v] = wall
                    res["steps"][v].append(steps)
                    res["cpu"][v].append(cpu)
                    res["cd_cpu"][v].append(cd_cpu)
            for v in ("kata", "runc", "floor"):
                res[v].append(got[v])
            res["ratio"].append(got["kata"] / got["floor"])
            kc = res["cpu"]["kata"][-1]
            out("  round %d/%d: kata %.3f s, runc %.3f s, floor %.3f s, kata/floor x%.3f;"
                " kata CPU shim %.2f s + QEMU %.2f s, containerd %.2f s" % (
                    r + 1, a.runs, got["kata"], got["runc"], got["floor"], res["ratio"][-1],
                    kc.get("shim", 0), kc.get("qemu", 0), res["cd_cpu"]["kata"][-1]))
        return res

    # ---- 2. memory of idle pods ----

    def mem_of(self, sids):
        """Per pod {kind: (rss, pss)} for the pods."""
        table = proc_table()
        return [PodProcs(s, table).mem() for s in sids]

    def mem_idle_one(self, handler):
        sid = self.start_pod(self.cri, handler)[0]
        time.sleep(self.args.settle)
        m = self.mem_of([sid])[0]
        self.remove_pods([sid])
        return m

    # ---- 3. parallel ----

    def parallel(self, handler, P):
        clients = [self.client() for _ in range(P)]
        results = [None] * P
        barrier = threading.Barrier(P + 1)

        def worker(i):
            barrier.wait()
            t = time.monotonic()
            try:
                results[i] = self.start_pod(clients[i], handler)
            except StartError as e:
                results[i] = (e, t, time.monotonic())
            except Exception as e:  # noqa: BLE001 -- a bug here must still show
                results[i] = (StartError("driver", "%s\n%s" % (e, traceback.format_exc())),
                              t, time.monotonic())

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(P)]
        for t in threads:
            t.start()
        cd = containerd_pid()
        c0 = cpu_total(cd)
        barrier.wait()
        for t in threads:
            t.join()
        cd_cpu = cpu_total(cd) - c0
        ok = [r for r in results if not isinstance(r[0], StartError)]
        bad = [r for r in results if isinstance(r[0], StartError)]
        starts = [r[3] for r in ok] + [r[1] for r in bad]
        ends = [r[4] for r in ok] + [r[2] for r in bad]
        wall = max(ends) - min(starts)
        lat = [r[4] - r[3] for r in ok]
        sids = [r[0] for r in ok] + [r[0].sid for r in bad if r[0].sid]
        table = proc_table()
        cpu = {}
        for s in [r[0] for r in ok]:
            try:
                for k, v in PodProcs(s, table).cpu().items():
                    cpu[k] = cpu.get(k, 0.0) + v
            except RuntimeError as e:
                self.fail("%s parallel: %s" % (handler, e))
        for e, t_fail_start, t_fail in bad:
            self.fail("%s parallel pod start failed after %.3f s at %s: %s" % (
                handler, t_fail - t_fail_start, e.step, e.err))
        if handler == "kata":
            self.kata_sids_parallel = [r[0] for r in ok]
        for c in clients:
            c.close()
        mem = []
        if ok:
            time.sleep(self.args.settle)
            mem = self.mem_of([r[0] for r in ok])
        self.remove_pods(sids)
        return {"wall": wall, "lat": lat, "ok": len(ok), "cpu": cpu, "cd_cpu": cd_cpu,
                "mem": mem}

    # ---- the shim's step timings (containerd copies the shims' log lines into its log) ----

    def shim_steps(self, sids):
        want = set(sids)
        steps, order = {}, []
        try:
            with open(os.path.join(ENV["CRI_DIR"], "containerd.log"), errors="replace") as f:
                for line in f:
                    if '"step":"' not in line:
                        continue
                    sb = re.search(r'"sandbox":"([0-9a-f]{64})"', line)
                    st = re.search(r'"step":"([^"]+)"', line)
                    ms = re.search(r'"duration_ms":"?([0-9]+)', line)
                    if not (sb and st and ms) or sb.group(1) not in want:
                        continue
                    name = st.group(1)
                    # The pod's first container is its pause (container id = sandbox id): its
                    # create-task contains the VM boot, the workload's does not.
                    c = re.search(r'"container":"([0-9a-f]{64})"', line)
                    if c and name in ("create-container", "create-task", "start-container"):
                        name += " (pause)" if c.group(1) == sb.group(1) else " (sleep)"
                    if name not in steps:
                        order.append(name)
                    steps.setdefault(name, []).append(int(ms.group(1)))
        except OSError:
            pass
        return order, steps

    # ---- everything ----

    def run(self):
        a = self.args
        P = a.parallel
        out("1. pod start, serial (RunPodSandbox -> CreateContainer -> StartContainer -> RUNNING)")
        ser = self.serial()

        out("2. memory of one idle pod (%g s after RUNNING)" % a.settle)
        m1 = {"kata": self.mem_idle_one("kata"), "runc": self.mem_idle_one("runc")}
        for h in ("kata", "runc"):
            out("  %s: %s" % (h, fmt_mem(m1[h])))

        out("3. %d pods started in parallel (%d threads, one gRPC channel each)" % (P, P))
        par = {}
        for h in ("kata", "runc"):
            par[h] = self.parallel(h, P)
            p = par[h]
            out("  %s: all %d/%d RUNNING after %.3f s (per pod: %s)" % (
                h, p["ok"], P, p["wall"], fmt_lat(p["lat"])))
            cpu = p["cpu"]
            out("    CPU until all RUNNING: %s; containerd %.2f s" % (
                ", ".join("%s %.2f s" % kv for kv in sorted(cpu.items())) or "-", p["cd_cpu"]))
            if p["mem"]:
                out("    idle (%g s), per pod average: %s" % (a.settle, fmt_mem(avg_mem(p["mem"]))))

        self.summary(ser, m1, par)
        return 1 if self.failures else 0

    def summary(self, ser, m1, par):
        a = self.args
        P = a.parallel
        out()
        out("summary")
        out(stats_line("pod start via CRI, kata (ours)", "s", ser["kata"]))
        out(stats_line("pod start via CRI, runc", "s", ser["runc"]))
        out(stats_line("floor: bare VM boot (QEMU start -> exit)", "s", ser["floor"]))
        out(stats_line("ratio kata/floor (per round)", "", ser["ratio"]))
        m = median(ser["ratio"])
        out("  kata over the floor: %+.1f %% (target ratio < 1.5: %s)" % (
            (m - 1) * 100, "met" if m < 1.5 else "NOT met"))
        out("  kata/runc (medians): x%.1f" % (median(ser["kata"]) / median(ser["runc"])))
        for h in ("kata", "runc"):
            st = ser["steps"][h]
            out("  %s CRI calls (median s): %s" % (h, ", ".join(
                "%s %.3f" % (k, median([s[k] for s in st]))
                for k in ("run-pod", "create", "start", "running"))))

        kc = ser["cpu"]["kata"]
        shim_c = [c.get("shim", 0.0) for c in kc]
        qemu_c = [c.get("qemu", 0.0) for c in kc]
        tot_c = [sum(c.values()) for c in kc]
        cd_c = ser["cd_cpu"]["kata"]
        out(stats_line("CPU of one kata pod start: shim", "s", shim_c, "%.2f"))
        out(stats_line("CPU of one kata pod start: QEMU (+ guest)", "s", qemu_c, "%.2f"))
        out(stats_line("CPU of one kata pod start: shim + QEMU", "s", tot_c, "%.2f"))
        out(stats_line("  containerd (+ CNI, `shim start`), kata", "s", cd_c, "%.2f"))
        rc = [sum(c.values()) for c in ser["cpu"]["runc"]]
        out(stats_line("CPU of one runc pod start: shim+runc+pause", "s", rc, "%.2f"))
        out(stats_line("  containerd (+ CNI, `shim start`), runc", "s", ser["cd_cpu"]["runc"],
                       "%.2f"))

        k = par["kata"]
        c = par["runc"]
        out("%-46s kata %.3f s (%d/%d RUNNING), runc %.3f s (%d/%d RUNNING)" % (
            "%d pods at once: first request -> all RUNNING" % P, k["wall"], k["ok"], P,
            c["wall"], c["ok"], P))
        cpu1 = median(tot_c)
        bound = P * cpu1 / self.nproc
        out("  CPU bound, kata: %d x %.2f CPU-s (shim + QEMU) / %d CPUs = %.2f s; wall/bound"
            " x%.2f (target <= 1.3: %s)" % (P, cpu1, self.nproc, bound, k["wall"] / bound,
                                            "met" if k["wall"] / bound <= 1.3 else "NOT met"))
        cpu1c = cpu1 + median(cd_c)
        bound_c = P * cpu1c / self.nproc
        out("  with containerd's share: %d x %.2f CPU-s / %d = %.2f s; wall/bound x%.2f" % (
            P, cpu1c, self.nproc, bound_c, k["wall"] / bound_c))
        if k["ok"]:
            used = sum(k["cpu"].values())
            out("  CPU the parallel kata pods used until all RUNNING: %.2f s, %.2f s per pod"
                " (x%.2f the serial start's)" % (used, used / k["ok"], used / k["ok"] / cpu1))

        def kata_line(label, m):
            shim = m.get("shim", (0, 0))[1] / 1024
            qemu = m.get("qemu", (0, 0))[1] / 1024
            return "  kata, %-16s shim PSS %.1f MiB + QEMU PSS %.1f MiB = %.1f MiB per pod" % (
                label + ":", shim, qemu, shim + qemu), shim + qemu

        l1, t1 = kata_line("1 idle pod", m1["kata"])
        out("memory per idle pod (PSS, %g s after RUNNING)" % a.settle)
        out(l1)
        tp = None
        if k["mem"]:
            lp, tp = kata_line("%d idle pods" % P, avg_mem(k["mem"]))
            out(lp)
        for label, m in (("1 idle pod", m1["runc"]),
                         ("%d idle pods" % P, avg_mem(c["mem"]) if c["mem"] else None)):
            if m:
                tot = sum(v[1] for v in m.values()) / 1024
                out("  runc, %-16s %s = %.1f MiB per pod" % (label + ":", " + ".join(
                    "%s PSS %.1f MiB" % (kind, v[1] / 1024) for kind, v in sorted(m.items())),
                    tot))
        worst = max(t for t in (t1, tp) if t is not None)
        out("  target shim + QEMU < 150 MiB per pod: %s" % ("met" if worst < 150 else "NOT met"))

        order, steps = self.shim_steps(self.kata_sids_serial)
        order_p, steps_p = self.shim_steps(self.kata_sids_parallel)
        if order or order_p:
            out("shim steps, kata (ms, median; from the shim's step/duration_ms log fields):")
            out("    %-24s %16s %24s" % ("", "serial", "%d in parallel" % P))
            for s in order + [x for x in order_p if x not in order]:
                a1 = steps.get(s, [])
                a2 = steps_p.get(s, [])
                out("    %-24s %16s %24s" % (
                    s, "%.0f (n=%d)" % (median(a1), len(a1)) if a1 else "-",
                    "%.0f (max %d, n=%d)" % (median(a2), max(a2), len(a2)) if a2 else "-"))
            out("    (wait: the Wait call, open for the container's life, not a start cost;"
                " delete-container and after: teardown)")
        else:
            out("shim steps: no step timings for our sandboxes in containerd.log")
        if self.failures:
            out("FAILURES (%d):" % len(self.failures))
            for f in self.failures:
                out("  " + f)


def _gone(pid):
    """PID has exited (a zombie not yet reaped counts as gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" in line.split()[1]
    except OSError:
        return True
    return False


def fmt_mem(m):
    return ", ".join("%s PSS %.1f MiB (RSS %.1f)" % (k, v[1] / 1024, v[0] / 1024)
                     for k, v in sorted(m.items(), key=lambda kv: kv[0] != "shim"))


def avg_mem(ms):
    acc = {}
    for m in ms:
        for k, (r, p) in m.items():
            a = acc.setdefault(k, [0, 0])
            a[0] += r
            a[1] += p
    return {k: (v[0] / len(ms), v[1] / len(ms)) for k, v in acc.items()}


def fmt_lat(v):
    if not v:
        return "none RUNNING"
    s = sorted(v)
    return "median %.3f s, min %.3f, max %.3f" % (median(s), s[0], s[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--call-timeout", type=float, default=300.0)
    ap.add_argument("--floor", nargs=argparse.REMAINDER, required=True,
                    help="the floor command (prints floor_seconds=S); the rest of the line")
    args = ap.parse_args()
    try:
        return Bench(args).run()
    except StartError as e:
        out("bench/cri: a pod start failed at %s: %s" % (e.step, e.err))
        return 1
    except (CriError, RuntimeError, OSError) as e:
        out("bench/cri: %s: %s" % (type(e).__name__, e))
        return 1
    except KeyboardInterrupt:
        out("bench/cri: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
