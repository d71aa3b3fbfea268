#!/usr/bin/python3
"""The kata-deploy manifests parse and agree with the installer.

- every YAML document under tools/packaging/kata-deploy/ parses and names apiVersion, kind
  and metadata.name;
- every RuntimeClass handler is a runtime `kata-deploy runtimes` says the DaemonSet's SHIMS and
  DEFAULT_SHIM make the installer write, and every such runtime has a RuntimeClass;
- the RuntimeClasses select the label the installer sets and carry overhead.podFixed;
- the environment variables both DaemonSets set are ones the installer reads (the `(Env:...)`
  names of `kata-deploy --help`); the payload override comes from ConfigMap payload-config key
  daemon.payload and Secret payload-secret keys username/password, all optional;
- the host paths the installer is pointed at (prefix, containerd config, socket, shim dir)
  are mounted from the host; the ServiceAccount exists and may get and patch nodes;
- `kubectl apply --dry-run=client` accepts every file, where kubectl and an API server are
  there (client-side dry run still asks the server for its resource types); otherwise that
  part is skipped, saying why.

Run by ctest with KATA_DEPLOY set to the installer binary. Exit 0 pass, 1 fail.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

try:
    import yaml
except ImportError:
    print("SKIP (test-manifests): python3-yaml is not installed (apt-get install python3-yaml)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY_DIR = os.path.dirname(HERE)
REPO = os.path.abspath(os.path.join(DEPLOY_DIR, "..", "..", ".."))
KATA_DEPLOY = os.environ.get("KATA_DEPLOY", "")
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL (test-manifests): " + msg)


def ok(msg):
    print("ok (test-manifests): " + msg)


def load_all():
    docs = []
    files = sorted(glob.glob(os.path.join(DEPLOY_DIR, "**", "*.yaml"), recursive=True))
    for path in files:
        rel = os.path.relpath(path, REPO)
        try:
            with open(path) as f:
                for doc in yaml.safe_load_all(f):
                    if doc is None:
                        continue
                    for key in ("apiVersion", "kind"):
                        if key not in doc:
                            fail("%s: a document without %s" % (rel, key))
                    if not doc.get("metadata", {}).get("name"):
                        fail("%s: a %s without metadata.name" % (rel, doc.get("kind")))
                    docs.append((rel, doc))
        except yaml.YAMLError as e:
            fail("%s: does not parse: %s" % (rel, e))
    return files, docs


def of_kind(docs, kind):
    return [(rel, d) for rel, d in docs if d.get("kind") == kind]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def installer_env_names():
    out = subprocess.run([KATA_DEPLOY, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\(Env:([A-Z0-9_]+)\)", out))


def installer_runtimes(shims, default_shim):
    cmd = [KATA_DEPLOY, "--shims", shims, "runtimes"]
    if default_shim:
        cmd[3:3] = ["--default-shim", default_shim]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}


def installer_label():
    with open(os.path.join(REPO, "src/tools/kata-deploy/src/installer.h")) as f:
        m = re.search(r'kNodeLabel = "([^"]+)"', f.read())
    return m.group(1) if m else None


def mounted(container, volumes, path):
    """The hostPath volume mounted where `path` (a file or dir the installer uses) lives."""
    best = None
    for vm in container.get("volumeMounts", []):
        mp = vm["mountPath"].rstrip("/") or "/"
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best[0]):
                best = (mp, vm["name"])
    if best is None:
        return None
    vol = volumes.get(best[1], {})
    return vol.get("hostPath", {}).get("path")


def check_daemonset(rel, ds, known_env, service_accounts):
    name = ds["metadata"]["name"]
    spec = ds["spec"]["template"]["spec"]
    containers = spec["containers"]
    if len(containers) != 1:
        fail("%s: DaemonSet %s has %d containers, expected 1" % (rel, name, len(containers)))
    c = containers[0]
    env = env_of(c)
    unknown = sorted(set(env) - known_env)
    if unknown:
        fail("%s: DaemonSet %s sets %s, which kata-deploy does not read" % (rel, name, ", ".join(unknown)))
    node = env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if node != "spec.nodeName":
        fail("%s: DaemonSet %s: NODE_NAME is not the pod's spec.nodeName" % (rel, name))
    if spec.get("serviceAccountName") not in service_accounts:
        fail("%s: DaemonSet %s uses ServiceAccount %s, which no manifest creates"
             % (rel, name, spec.get("serviceAccountName")))
    if c.get("command", [None])[0] != "/usr/bin/kata-deploy":
        fail("%s: DaemonSet %s does not run /usr/bin/kata-deploy" % (rel, name))
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    paths = {
        "INSTALLATION_PREFIX": env.get("INSTALLATION_PREFIX", {}).get("value", "/opt/kata"),
        "CONTAINERD_CONFIG": env.get("CONTAINERD_CONFIG", {}).get("value", "/etc/containerd/config.toml"),
        "CONTAINERD_SOCKET": env.get("CONTAINERD_SOCKET", {}).get("value", "/run/containerd/containerd.sock"),
        "SHIM_DIR": env.get("SHIM_DIR", {}).get("value", "/usr/local/bin"),
    }
    for var, path in paths.items():
        host = mounted(c, volumes, path)
        if host is None:
            fail("%s: DaemonSet %s: %s=%s is not on a hostPath mount" % (rel, name, var, path))
    for var in ("INSTALLATION_PREFIX", "CONTAINERD_CONFIG", "CONTAINERD_SOCKET"):
        # the same path on the host and in the pod: the drop-in and the symlinks name it
        host = mounted(c, volumes, paths[var])
        mp = [vm["mountPath"].rstrip("/") for vm in c.get("volumeMounts", [])
              if paths[var].startswith(vm["mountPath"].rstrip("/"))]
        if host is not None and mp and host.rstrip("/") != max(mp, key=len):
            fail("%s: DaemonSet %s: %s is mounted from host %s at %s (must be the same path)"
                 % (rel, name, var, host, max(mp, key=len)))
    if not c.get("securityContext", {}).get("privileged"):
        fail("%s: DaemonSet %s is not privileged (it restarts the host's containerd)" % (rel, name))
    return env


def main():
    if not KATA_DEPLOY or not os.access(KATA_DEPLOY, os.X_OK):
        print("FAIL (test-manifests): KATA_DEPLOY=%r is not an executable (run through ctest)" % KATA_DEPLOY)
        return 1
    files, docs = load_all()
    ok("%d YAML files, %d documents parse" % (len(files), len(docs)))
    known_env = installer_env_names()

    service_accounts = {d["metadata"]["name"] for _, d in of_kind(docs, "ServiceAccount")}
    daemonsets = {d["metadata"]["name"]: (rel, d) for rel, d in of_kind(docs, "DaemonSet")}
    for want in ("kata-deploy", "kubelet-kata-cleanup"):
        if want not in daemonsets:
            fail("no DaemonSet %s" % want)
    if failures:
        return 1
    rel, ds = daemonsets["kata-deploy"]
    env = check_daemonset(rel, ds, known_env, service_accounts)
    check_daemonset(*daemonsets["kubelet-kata-cleanup"], known_env, service_accounts)
    if daemonsets["kubelet-kata-cleanup"][1]["spec"]["template"]["spec"]["containers"][0]["args"][0] != "cleanup":
        fail("the kubelet-kata-cleanup DaemonSet does not run kata-deploy cleanup")
    for var, (kind, ref_name, key) in {
        "PAYLOAD_IMAGE": ("configMapKeyRef", "payload-config", "daemon.payload"),
        "PAYLOAD_USERNAME": ("secretKeyRef", "payload-secret", "username"),
        "PAYLOAD_PASSWORD": ("secretKeyRef", "payload-secret", "password"),
    }.items():
        ref = env.get(var, {}).get("valueFrom", {}).get(kind)
        if not ref or ref.get("name") != ref_name or ref.get("key") != key or ref.get("optional") is not True:
            fail("%s: %s must come from %s %s key %s (optional)" % (rel, var, kind, ref_name, key))
    for rel2, d in of_kind(docs, "ConfigMap"):
        if d["metadata"]["name"] == "payload-config" and "daemon.payload" not in d.get("data", {}):
            fail("%s: ConfigMap payload-config has no daemon.payload" % rel2)
    for rel2, d in of_kind(docs, "Secret"):
        if d["metadata"]["name"] == "payload-secret" and set(d.get("data", {})) != {"username", "password"}:
            fail("%s: Secret payload-secret must have exactly username and password" % rel2)
    ok("DaemonSets: env names are the installer's (%d known), payload override from payload-config/"
       "payload-secret, host paths mounted" % len(known_env))

    # RBAC: the DaemonSets' account may get and patch nodes
    sa = ds["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {d["metadata"]["name"]: d for _, d in of_kind(docs, "ClusterRole")}
    bound = False
    for _, b in of_kind(docs, "ClusterRoleBinding"):
        subj = [s for s in b.get("subjects", []) if s.get("kind") == "ServiceAccount" and s.get("name") == sa]
        role = roles.get(b["roleRef"]["name"])
        if subj and role:
            for rule in role.get("rules", []):
                if "nodes" in rule.get("resources", []) and {"get", "patch"} <= set(rule.get("verbs", [])):
                    bound = True
    if not bound:
        fail("ServiceAccount %s is not bound to a ClusterRole that may get and patch nodes" % sa)
    else:
        ok("RBAC: %s may get and patch nodes" % sa)

    # RuntimeClasses against what the installer writes
    shims = env.get("SHIMS", {}).get("value", "qemu")
    default_shim = env.get("DEFAULT_SHIM", {}).get("value", "")
    runtimes = installer_runtimes(shims, default_shim)
    label = installer_label()
    classes = of_kind(docs, "RuntimeClass")
    handlers = set()
    for rel2, rc in classes:
        h = rc.get("handler")
        handlers.add(h)
        if h not in runtimes:
            fail("%s: RuntimeClass %s has handler %s, which the installer does not write for SHIMS=%r "
                 "(it writes %s)" % (rel2, rc["metadata"]["name"], h, shims, ", ".join(sorted(runtimes))))
        pod_fixed = rc.get("overhead", {}).get("podFixed", {})
        if not pod_fixed.get("memory") or not pod_fixed.get("cpu"):
            fail("%s: RuntimeClass %s has no overhead.podFixed memory and cpu" % (rel2, h))
        sel = rc.get("scheduling", {}).get("nodeSelector", {})
        if sel.get(label) != "true":
            fail("%s: RuntimeClass %s does not select %s: \"true\" (the label the installer sets)" % (rel2, h, label))
    missing = sorted(set(runtimes) - handlers)
    if missing:
        fail("the installer writes runtimes %s, which no RuntimeClass names" % ", ".join(missing))
    for want in ("kata", "kata-qemu", "kata-qemu-sev"):
        if want not in handlers:
            fail("no RuntimeClass with handler %s" % want)
    ok("RuntimeClasses %s = the runtimes the installer writes for SHIMS=%r (%s)"
       % (", ".join(sorted(handlers)), shims, ", ".join("%s=%s" % kv for kv in sorted(runtimes.items()))))

    # kubectl client-side dry run
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("SKIP part (test-manifests): kubectl dry run: kubectl is not installed")
    else:
        kenv = dict(os.environ)
        # Only a cluster named on purpose: by default kubectl's localhost:8080, nothing remote.
        kenv["KUBECONFIG"] = os.environ.get("KATA_DEPLOY_TEST_KUBECONFIG", "/dev/null")
        probe = subprocess.run([kubectl, "version", "--request-timeout=5s"], capture_output=True,
                               text=True, env=kenv)
        if "Server Version" not in probe.stdout:
            reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
            print("SKIP part (test-manifests): kubectl apply --dry-run=client: no API server "
                  "reachable (client-side dry run still needs the server's resource list; set "
                  "KATA_DEPLOY_TEST_KUBECONFIG to use one): %s" % reason)
        else:
            for path in files:
                r = subprocess.run([kubectl, "apply", "--dry-run=client", "-f", path],
                                   capture_output=True, text=True, env=kenv)
                if r.returncode != 0:
                    fail("kubectl apply --dry-run=client -f %s: %s" % (path, r.stderr.strip()))
            ok("kubectl apply --dry-run=client accepts all %d files" % len(files))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
