# shellcheck shell=bash
# tests/cri/lib.sh: shell helpers for CRI end-to-end tests (sourced; bash).
#
# A test's world lives in a network namespace made for it (kcri-<random>): a private containerd
# 1.6 with its cri plugin, the Debian CNI plugins (bridge + host-local + portmap + loopback) on a
# bridge of its own, and the CRI client (cri_client.py). Nothing is routed out of the namespace.
# containerd keeps its root, state, sockets, runc state, pod netns mounts, CNI IPAM data, images
# and container logs under DIR.
#
#   cri_skip_reason
#       prints why this host cannot run the tests at all (not root, no network namespaces) and
#       returns 0; returns 1 (prints nothing) when it can.
#   cri_setup --dir DIR [--kata-shim PATH --kata-config PATH]
#       sets up the world above and waits for the CRI to answer Version. With --kata-shim the
#       runtime handler "kata" (io.containerd.kata.v2, ConfigPath = --kata-config) is there too;
#       "runc" always is. Sets and exports CRI_DIR CRI_ID CRI_NETNS CRI_BRIDGE CRI_NETWORK
#       CRI_SUBNET CRI_GATEWAY CRI_SOCKET CRI_CGROUP_PARENT CRI_LOG_DIR CRI_PAUSE_IMAGE
#       CRI_BUSYBOX_IMAGE CRI_PYTHON CRI_CLIENT CRI_HANDLERS, and writes them to DIR/cri.env.
#   cri_teardown [--dir DIR]
#       removes pods and containers, stops containerd and whatever it started, unmounts what is
#       left under DIR, removes the bridge, the netns, the test's CNI cache entries and cgroups,
#       and what a kata shim left of the test's sandboxes (/run/vc/{sbs,vm}/<id>,
#       /run/kata-containers/shared/sandboxes/<id>; noted in DIR/leaks). Safe after a partial
#       cri_setup, and on its own with --dir DIR (reads DIR/cri.env). DIR itself is the caller's.
#   cri_leftovers
#       prints what cri_teardown should have removed and did not, and the runtime's leaks it
#       had to remove; returns 1 if anything.
#   cri_containerd_stop [SIGNAL] / cri_containerd_start / cri_containerd_pid
#       stops (SIGTERM by default; waits until it is gone) and starts again (same config, log
#       appended, waits for the CRI) the test's containerd, as a node's containerd restart does;
#       prints its pid.
#   cri_netns CMD...       runs CMD inside the test's network namespace
#   cri_client ARGS...     runs cri_client.py (in the netns) against the test's containerd
#   cri_ctr ARGS...        runs ctr against the test's containerd, namespace k8s.io

_cri_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_cri_repo=$(cd "$_cri_here/../.." && pwd)

CRI_PYTHON=${CRI_PYTHON:-/usr/bin/python3}
CRI_CLIENT=$_cri_here/cri_client.py
CRI_PAUSE_IMAGE=${CRI_PAUSE_IMAGE:-localhost/kata-cpp/pause:1.0}
CRI_BUSYBOX_IMAGE=${CRI_BUSYBOX_IMAGE:-docker.io/kata-cpp/busybox:latest}
CRI_CNI_BIN_DIR=${CRI_CNI_BIN_DIR:-/usr/lib/cni}
CRI_CNI_CACHE=/var/lib/cni
_CRI_ENV_VARS="CRI_DIR CRI_ID CRI_NETNS CRI_BRIDGE CRI_NETWORK CRI_SUBNET CRI_GATEWAY CRI_SOCKET
  CRI_CGROUP_PARENT CRI_LOG_DIR CRI_PAUSE_IMAGE CRI_BUSYBOX_IMAGE CRI_PYTHON CRI_CLIENT
  CRI_HANDLERS CRI_CNI_CACHE_CREATED"

_cri_err() { echo "cri: $*" >&2; return 1; }
_cri_log() { echo "cri: $*" >&2; }

cri_netns() { nsenter --net="/run/netns/$CRI_NETNS" -- "$@"; }

cri_client() {
  cri_netns "$CRI_PYTHON" "$CRI_CLIENT" --socket "$CRI_SOCKET" --build-dir "$CRI_DIR/proto-build" "$@"
}

cri_ctr() { ctr --address "$CRI_SOCKET" --namespace k8s.io "$@"; }

cri_skip_reason() {
  if [ "$(id -u)" != 0 ]; then
    echo "needs root (network namespaces, mounts, containerd)"
    return 0
  fi
  if ! unshare --net true 2>/dev/null; then
    echo "this host cannot create network namespaces (unshare --net failed)"
    return 0
  fi
  return 1
}

# Saves the CRI_* variables to DIR/cri.env so that a later cri_teardown --dir DIR (e.g. from
# another shell) knows what to remove.
_cri_save_env() {
  [ -n "${CRI_DIR:-}" ] || return 0
  local v
  for v in $_CRI_ENV_VARS; do
    printf '%s=%q\n' "$v" "${!v:-}"
  done >"$CRI_DIR/cri.env"
}

# Prints the pids whose /proc/PID/cmdline contains the string $1 (NUL separators read as
# spaces), except this shell.
_cri_pids_with_cmdline() {
  local f pid cmd
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
    case $cmd in *"$1"*) echo "$pid" ;; esac
  done
}

# Prints the pids of the processes whose network namespace is one of the netns files given
# (the test's own netns and the pod netns mounts under DIR).
_cri_pids_in_netns() {
  local inodes="" f ino pid link
  for f in "$@"; do
    [ -e "$f" ] || continue
    ino=$(stat -L -c %i "$f" 2>/dev/null) || continue
    inodes="$inodes net:[$ino]"
  done
  [ -n "$inodes" ] || return 0
  for f in /proc/[0-9]*/ns/net; do
    link=$(readlink "$f" 2>/dev/null) || continue
    case " $inodes " in
      *" $link "*)
        pid=${f#/proc/}
        pid=${pid%/ns/net}
        [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] || echo "$pid"
        ;;
    esac
  done
}

# Prints the given pids and all their descendants.
_cri_with_descendants() {
  local -A parent=()
  local f rest pid ppid
  for f in /proc/[0-9]*/stat; do
    rest=$(cat "$f" 2>/dev/null) || continue
    pid=${rest%% *}
    rest=${rest##*) }
    ppid=${rest#* }
    ppid=${ppid%% *}
    parent[$pid]=$ppid
  done
  local -A seen=()
  local queue=("$@") changed=1
  for pid in "${queue[@]}"; do seen[$pid]=1; done
  while ((changed)); do
    changed=0
    for pid in "${!parent[@]}"; do
      if [ -z "${seen[$pid]:-}" ] && [ -n "${seen[${parent[$pid]}]:-}" ]; then
        seen[$pid]=1
        changed=1
      fi
    done
  done
  printf '%s\n' "${!seen[@]}"
}

# The test's processes: containerd, its shims (and what they started, e.g. runc containers or
# QEMU), and anything else in the test's network namespaces.
_cri_test_pids() {
  local roots=()
  [ -n "${CRI_DIR:-}" ] || return 0
  mapfile -t roots < <(
    _cri_pids_with_cmdline "$CRI_DIR/containerd.toml"
    [ -n "${CRI_SOCKET:-}" ] && _cri_pids_with_cmdline "-address $CRI_SOCKET"
    _cri_pids_in_netns ${CRI_NETNS:+"/run/netns/$CRI_NETNS"} "$CRI_DIR"/state/netns/*
  )
  ((${#roots[@]})) || return 0
  _cri_with_descendants "${roots[@]}" | sort -un
}

_cri_mounts_under() { # DIR: mount points at or under DIR, deepest first
  awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# The ids of every pod sandbox this containerd ran: those it still knows, and those it logged
# (RunPodSandbox ... returns sandbox id "<id>"), since a removed pod leaves no other trace.
_cri_sandbox_ids() {
  local sb
  {
    for sb in "$CRI_DIR"/root/io.containerd.grpc.v1.cri/sandboxes/*; do
      [ -d "$sb" ] && echo "${sb##*/}"
    done
    grep -o 'returns sandbox id [^0-9a-f]*[0-9a-f]\{64\}' "$CRI_DIR/containerd.log" 2>/dev/null |
      grep -o '[0-9a-f]\{64\}$'
  } | sort -u
}

# Where containerd-shim-kata-v2 keeps a sandbox's state on the host; the shim removes them when
# the sandbox goes. Anything left there after the pods are gone is the shim's leak.
_cri_kata_state_paths() { # SANDBOX_ID
  echo "/run/vc/sbs/$1" "/run/vc/vm/$1" "/run/kata-containers/shared/sandboxes/$1"
}

_cri_write_cni_conf() {
  mkdir -p "$CRI_DIR/cni/net.d" "$CRI_DIR/cni/ipam" || return 1
  cat >"$CRI_DIR/cni/net.d/10-$CRI_NETWORK.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$CRI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CRI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CRI_DIR/cni/ipam",
        "ranges": [[{ "subnet": "$CRI_SUBNET", "gateway": "$CRI_GATEWAY" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
JSON
}

_cri_write_containerd_conf() { # [KATA_CONFIG]
  local kata_config=${1:-}
  cat >"$CRI_DIR/containerd.toml" <<TOML
version = 2
root = "$CRI_DIR/root"
state = "$CRI_DIR/state"

[grpc]
  address = "$CRI_SOCKET"
[ttrpc]
  address = "$CRI_SOCKET.ttrpc"
[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "$CRI_DIR/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$CRI_PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: it cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  # pod network namespaces are bind-mounted under the state dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # seconds between snapshot usage scans (ContainerStats' writable_layer); 10 by default.
  stats_collect_period = 1
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CRI_CNI_BIN_DIR"
    conf_dir = "$CRI_DIR/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CRI_DIR/certs.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$CRI_DIR/runc"
TOML
  if [ -n "$kata_config" ]; then
    cat >>"$CRI_DIR/containerd.toml" <<TOML
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
      runtime_type = "io.containerd.kata.v2"
      pod_annotations = ["io.katacontainers.*"]
      privileged_without_host_devices = true
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata.options]
        ConfigPath = "$kata_config"
TOML
  fi
}

# Builds the pause image (a static C program in an otherwise empty image) and the busybox-static
# image, as docker-archive tarballs under DIR/images.
_cri_build_images() {
  local work=$CRI_DIR/images
  mkdir -p "$work" || return 1
  (
    set -e
    cd "$work"
    gcc -static -O2 -o pause-bin "$_cri_here/pause.c"
    strip pause-bin
    umoci init --layout oci
    umoci new --image oci:pause
    umoci unpack --rootless --image oci:pause pause-bundle >/dev/null
    install -m 0755 pause-bin pause-bundle/rootfs/pause
    umoci repack --image oci:pause pause-bundle
    umoci config --image oci:pause --config.entrypoint /pause
    skopeo copy oci:oci:pause "docker-archive:pause.tar:$CRI_PAUSE_IMAGE" >/dev/null
    rm -rf pause-bundle oci pause-bin
  ) || { _cri_err "building the pause image failed"; return 1; }
  "$_cri_repo/tests/fixtures/make-busybox-image.sh" "$work/busybox.tar" "$CRI_BUSYBOX_IMAGE" \
    2>"$work/busybox.log" ||
    { _cri_err "make-busybox-image.sh failed: $(tail -3 "$work/busybox.log")"; return 1; }
}

# Starts the test's containerd (in the test's netns, its output appended to DIR/containerd.log)
# and waits until it answers on its socket.
_cri_containerd_spawn() {
  # nsenter --net (not `ip netns exec`): containerd must stay in the host's mount namespace, so
  # that the mounts it makes under DIR can be seen, checked and unmounted from here.
  PATH="$CRI_DIR/bin:$PATH" setsid nsenter --net="/run/netns/$CRI_NETNS" -- \
    containerd --config "$CRI_DIR/containerd.toml" >>"$CRI_DIR/containerd.log" 2>&1 </dev/null &
  for _ in $(seq 100); do
    [ -S "$CRI_SOCKET" ] && cri_ctr version >/dev/null 2>&1 && break
    sleep 0.1
  done
  cri_ctr version >/dev/null 2>&1 ||
    { _cri_err "containerd did not come up: $(tail -5 "$CRI_DIR/containerd.log")"; return 1; }
}

# Waits until the cri plugin answers Version (it does once it has recovered its state) and
# reports NetworkReady (once it has loaded our CNI config).
_cri_wait_cri() {
  cri_client wait 30 >/dev/null ||
    { _cri_err "the CRI did not answer Version: $(grep -i -m3 'cri\|error' "$CRI_DIR/containerd.log")"; return 1; }
  for _ in $(seq 50); do
    cri_client Status '{}' 2>/dev/null | tr -d ' \n' |
      grep -q '"reason":"NetworkPluginNotReady"' || break
    sleep 0.2
  done
}

# The test's containerd process (not a shim: their command lines do not name the config).
cri_containerd_pid() {
  local pid
  for pid in $(_cri_pids_with_cmdline "$CRI_DIR/containerd.toml"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = containerd ] && { echo "$pid"; return 0; }
  done
  return 1
}

# Stops the test's containerd the way a node's service manager does (SIGTERM by default), and
# waits up to 30 s until it is gone. Its shims (and their VMs) go on running.
cri_containerd_stop() { # [SIGNAL]
  local sig=${1:-TERM} pid
  pid=$(cri_containerd_pid) || { _cri_err "containerd is not running"; return 1; }
  kill -"$sig" "$pid" || return 1
  for _ in $(seq 300); do
    [ "$(_cri_proc_start "$pid")" = "" ] && return 0
    # A zombie (our child, not yet reaped) is gone as far as the test is concerned.
    grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 0
    sleep 0.1
  done
  _cri_err "containerd (pid $pid) did not exit within 30 s of SIG$sig"
  return 1
}

# Starts the test's containerd again with the same config (after cri_containerd_stop), and
# waits until its CRI answers again.
cri_containerd_start() {
  if [ -z "${CRI_DIR:-}" ] || [ ! -f "$CRI_DIR/containerd.toml" ]; then
    _cri_err "cri_containerd_start: no cri_setup here (CRI_DIR=${CRI_DIR:-})"
    return 1
  fi
  if cri_containerd_pid >/dev/null; then
    _cri_err "containerd is already running"
    return 1
  fi
  echo "---- cri_containerd_start $(date -u +%FT%T.%NZ) ----" >>"$CRI_DIR/containerd.log"
  _cri_containerd_spawn || return 1
  _cri_wait_cri
}

cri_setup() {
  local dir="" kata_shim="" kata_config=""
  while (($#)); do
    case $1 in
      --dir) dir=$2; shift 2 ;;
      --kata-shim) kata_shim=$2; shift 2 ;;
      --kata-config) kata_config=$2; shift 2 ;;
      *) _cri_err "cri_setup: unknown argument $1"; return 1 ;;
    esac
  done
  [ -n "$dir" ] || { _cri_err "usage: cri_setup --dir DIR [--kata-shim PATH --kata-config PATH]"; return 1; }
  if [ -n "$kata_shim$kata_config" ]; then
    [ -x "$kata_shim" ] || { _cri_err "--kata-shim $kata_shim is not an executable"; return 1; }
    [ -f "$kata_config" ] || { _cri_err "--kata-config $kata_config is not a file"; return 1; }
  fi
  local reason
  if reason=$(cri_skip_reason); then
    _cri_err "this host cannot run CRI tests: $reason"
    return 1
  fi
  local tool
  for tool in containerd ctr containerd-shim-runc-v2 runc ip nsenter umoci skopeo gcc protoc; do
    command -v "$tool" >/dev/null || { _cri_err "$tool is not installed"; return 1; }
  done
  for tool in bridge host-local portmap loopback; do
    [ -x "$CRI_CNI_BIN_DIR/$tool" ] ||
      { _cri_err "CNI plugin $CRI_CNI_BIN_DIR/$tool missing (apt-get install containernetworking-plugins)"; return 1; }
  done
  "$CRI_PYTHON" -c 'import grpc, google.protobuf' 2>/dev/null ||
    { _cri_err "$CRI_PYTHON lacks grpc/protobuf (apt-get install python3-grpcio python3-protobuf)"; return 1; }
  gcc -print-file-name=libc.a | grep -q / ||
    { _cri_err "no static libc for the pause image (apt-get install libc6-dev)"; return 1; }

  mkdir -p "$dir" || return 1
  CRI_DIR=$(cd "$dir" && pwd)
  CRI_ID=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  CRI_NETNS=kcri-$CRI_ID
  CRI_BRIDGE=kcri$CRI_ID            # 12 characters: fits IFNAMSIZ
  CRI_NETWORK=kcri-$CRI_ID          # the CNI network name: names our /var/lib/cni entries
  local octet2=$((200 + RANDOM % 50)) octet3=$((RANDOM % 256))
  CRI_SUBNET=10.$octet2.$octet3.0/24
  CRI_GATEWAY=10.$octet2.$octet3.1
  CRI_SOCKET=$CRI_DIR/containerd.sock
  CRI_CGROUP_PARENT=/kcri-$CRI_ID
  CRI_LOG_DIR=$CRI_DIR/logs
  CRI_HANDLERS=runc
  [ -n "$kata_shim" ] && CRI_HANDLERS="runc kata"
  CRI_CNI_CACHE_CREATED=""
  [ -d "$CRI_CNI_CACHE/results" ] || CRI_CNI_CACHE_CREATED=1
  export CRI_DIR CRI_ID CRI_NETNS CRI_BRIDGE CRI_NETWORK CRI_SUBNET CRI_GATEWAY CRI_SOCKET \
    CRI_CGROUP_PARENT CRI_LOG_DIR CRI_PAUSE_IMAGE CRI_BUSYBOX_IMAGE CRI_PYTHON CRI_CLIENT \
    CRI_HANDLERS CRI_CNI_CACHE_CREATED
  _cri_save_env
  mkdir -p "$CRI_DIR/bin" "$CRI_LOG_DIR" "$CRI_DIR/certs.d" || return 1

  ip netns add "$CRI_NETNS" || { _cri_err "ip netns add $CRI_NETNS failed"; return 1; }
  ip -n "$CRI_NETNS" link set lo up || { _cri_err "cannot bring lo up in $CRI_NETNS"; return 1; }

  _cri_write_cni_conf || return 1
  if [ -n "$kata_shim" ]; then
    ln -sfn "$(readlink -f "$kata_shim")" "$CRI_DIR/bin/containerd-shim-kata-v2" || return 1
    _cri_write_containerd_conf "$(readlink -f "$kata_config")" || return 1
  else
    _cri_write_containerd_conf || return 1
  fi
  _cri_build_images || return 1

  : >"$CRI_DIR/containerd.log"
  _cri_containerd_spawn || return 1

  local img
  for img in pause busybox; do
    cri_ctr images import "$CRI_DIR/images/$img.tar" >"$CRI_DIR/images/$img.import.log" 2>&1 ||
      { _cri_err "ctr images import $img.tar failed: $(tail -3 "$CRI_DIR/images/$img.import.log")"; return 1; }
  done
  _cri_wait_cri || return 1
  _cri_log "containerd (CRI) up in netns $CRI_NETNS, bridge $CRI_BRIDGE $CRI_SUBNET, handlers: $CRI_HANDLERS"
}

cri_teardown() {
  if [ "${1:-}" = --dir ]; then
    # Without DIR/cri.env (setup stopped before writing it) the current CRI_* variables hold.
    if [ -f "$2/cri.env" ]; then
      # shellcheck disable=SC1091
      . "$2/cri.env"
    elif [ -z "${CRI_DIR:-}" ]; then
      return 0
    fi
  fi
  [ -n "${CRI_DIR:-}" ] || return 0

  # 1. Through the CRI, while it answers: stop and remove containers and pods (so that CNI DEL
  #    runs and the shims exit by themselves).
  if [ -S "${CRI_SOCKET:-}" ] && [ -e "/run/netns/${CRI_NETNS:-}" ]; then
    timeout 120 nsenter --net="/run/netns/$CRI_NETNS" -- "$CRI_PYTHON" "$CRI_CLIENT" \
      --socket "$CRI_SOCKET" --build-dir "$CRI_DIR/proto-build" --timeout 60 cleanup \
      >/dev/null 2>>"$CRI_DIR/teardown.log" ||
      _cri_log "teardown: CRI cleanup failed (see $CRI_DIR/teardown.log)"
  fi
  local sandboxes=()
  mapfile -t sandboxes < <(_cri_sandbox_ids)

  # 2. containerd, then whatever of the test is still running (shims, containers, VMs).
  local pid pids=()
  mapfile -t pids < <(_cri_pids_with_cmdline "$CRI_DIR/containerd.toml")
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 50); do
    mapfile -t pids < <(_cri_pids_with_cmdline "$CRI_DIR/containerd.toml")
    ((${#pids[@]})) || break
    sleep 0.1
  done
  for _ in 1 2 3; do
    mapfile -t pids < <(_cri_test_pids)
    ((${#pids[@]})) || break
    _cri_log "teardown: killing leftover processes: $(for pid in "${pids[@]}"; do
      printf '%s(%s) ' "$pid" "$(cat "/proc/$pid/comm" 2>/dev/null)"; done)"
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.3
  done

  # 3. Mounts under DIR (rootfs overlays, sandbox shm, pod netns bind mounts), and what a kata
  #    shim left of our sandboxes (noted in DIR/leaks for cri_leftovers, then removed).
  local mp sid p
  for sid in "${sandboxes[@]}"; do
    for p in $(_cri_kata_state_paths "$sid"); do
      [ -e "$p" ] || continue
      echo "$p (left by the runtime)" >>"$CRI_DIR/leaks"
      while read -r mp; do
        [ -n "$mp" ] && { umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null; }
      done < <(_cri_mounts_under "$p")
      [ -n "$(_cri_mounts_under "$p")" ] || rm -rf "$p"
    done
  done
  while read -r mp; do
    [ -n "$mp" ] || continue
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null ||
      _cri_log "teardown: cannot unmount $mp"
  done < <(_cri_mounts_under "$CRI_DIR")

  # 4. Loop devices over files of the test (the scenario's block volume).
  local loopdev
  while read -r loopdev; do
    [ -n "$loopdev" ] && { losetup -d "$loopdev" 2>/dev/null ||
      _cri_log "teardown: losetup -d $loopdev failed"; }
  done < <(_cri_loop_devices)

  # 5. The bridge and the netns.
  if [ -n "${CRI_NETNS:-}" ] && [ -e "/run/netns/$CRI_NETNS" ]; then
    ip -n "$CRI_NETNS" link del "$CRI_BRIDGE" 2>/dev/null
    ip netns del "$CRI_NETNS" 2>/dev/null || _cri_log "teardown: ip netns del $CRI_NETNS failed"
  fi

  # 6. libcni's cache: our network's entries and the loopback network's for our sandboxes.
  if [ -n "${CRI_NETWORK:-}" ]; then
    rm -f "$CRI_CNI_CACHE/results/$CRI_NETWORK"-*
    for sid in "${sandboxes[@]}"; do
      rm -f "$CRI_CNI_CACHE/results/cni-loopback-$sid"-*
    done
    if [ -n "${CRI_CNI_CACHE_CREATED:-}" ]; then
      rmdir "$CRI_CNI_CACHE/results" "$CRI_CNI_CACHE" 2>/dev/null
    fi
  fi

  # 7. The pods' cgroups (every v1 hierarchy, and the unified one).
  if [ -n "${CRI_CGROUP_PARENT:-}" ]; then
    local cg
    for cg in /sys/fs/cgroup"$CRI_CGROUP_PARENT" /sys/fs/cgroup/*"$CRI_CGROUP_PARENT"; do
      [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    done
  fi
  return 0
}

# Loop devices whose backing file lies under CRI_DIR.
_cri_loop_devices() {
  [ -n "${CRI_DIR:-}" ] || return 0
  losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null |
    awk -v d="$CRI_DIR/" 'index($2, d) == 1 { print $1 }'
}

cri_leftovers() {
  [ -n "${CRI_DIR:-}" ] || return 0
  local bad=0 what
  what=$(_cri_loop_devices | tr '\n' ' ')
  [ -z "$what" ] || { echo "loop devices over the test's files: $what"; bad=1; }
  what=$(_cri_mounts_under "$CRI_DIR")
  [ -z "$what" ] || { echo "mounts under $CRI_DIR: $what"; bad=1; }
  if [ -n "${CRI_NETNS:-}" ] && [ -e "/run/netns/$CRI_NETNS" ]; then
    echo "netns $CRI_NETNS still exists"; bad=1
  fi
  if [ -n "${CRI_BRIDGE:-}" ] && ip link show "$CRI_BRIDGE" >/dev/null 2>&1; then
    echo "bridge $CRI_BRIDGE exists in the host netns"; bad=1
  fi
  what=$(_cri_test_pids | tr '\n' ' ')
  [ -z "$what" ] || { echo "processes of the test still running: $what"; bad=1; }
  what=$(ls "$CRI_CNI_CACHE/results/$CRI_NETWORK"-* 2>/dev/null)
  local sid p
  for sid in $(_cri_sandbox_ids); do
    what="$what $(ls "$CRI_CNI_CACHE/results/cni-loopback-$sid"-* 2>/dev/null)"
  done
  what=$(echo "$what" | xargs)
  [ -z "$what" ] || { echo "CNI cache entries of the test: $what"; bad=1; }
  what=""
  local cg
  for cg in /sys/fs/cgroup"$CRI_CGROUP_PARENT" /sys/fs/cgroup/*"$CRI_CGROUP_PARENT"; do
    [ -d "$cg" ] && what="$what $cg"
  done
  [ -z "$what" ] || { echo "cgroups of the test: $what"; bad=1; }
  [ -d "$CRI_CNI_CACHE/networks/$CRI_NETWORK" ] &&
    { echo "host-local IPAM state in $CRI_CNI_CACHE/networks/$CRI_NETWORK"; bad=1; }
  # Runtime state of our sandboxes: still there, or found (and removed) by cri_teardown.
  what=""
  for sid in $(_cri_sandbox_ids); do
    for p in $(_cri_kata_state_paths "$sid"); do
      [ -e "$p" ] && what="$what $p"
    done
  done
  [ -f "$CRI_DIR/leaks" ] && what="$what $(sort -u "$CRI_DIR/leaks" | tr '\n' ' ')"
  what=$(echo "$what" | xargs)
  [ -z "$what" ] || { echo "runtime state of the test's sandboxes: $what"; bad=1; }
  return $bad
}

# ---- the driver of cri_runc_test.sh / cri_kata_test.sh ----
#   cri_test_init HANDLER [KEEP]   a work dir (CRI_TEST_WORK), counters, and an EXIT trap that
#                                  tears down, checks for leftovers and prints the summary line
#   cri_test_pass MSG / cri_test_fail MSG
#   cri_test_setup [cri_setup options]
#   cri_test_scenario [cri_scenario.py options]
#   cri_test_scenario_script SCRIPT [options]     the same with another scenario script

# A test run records itself (pid and start time) in its work dir. A run that was SIGKILLed
# (e.g. by a ctest timeout) could not tear down; the next run finds its owner gone and tears
# its dir down.
_cri_proc_start() { # PID: the process's start time (field 22 of /proc/PID/stat)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  local fields
  read -r -a fields <<<"$stat"
  echo "${fields[19]}"
}

_cri_reap_stale() {
  local d pid start
  for d in /tmp/kcri-test.*; do
    [ -f "$d/owner" ] || continue
    read -r pid start <"$d/owner" || continue
    if [ "$(_cri_proc_start "$pid")" != "$start" ]; then
      _cri_log "tearing down the remains of a killed run: $d"
      (cri_teardown --dir "$d") 2>&1 | sed 's/^/  /' >&2
      [ -n "$(_cri_mounts_under "$d")" ] || rm -rf "$d"
    fi
  done
}

cri_test_init() {
  CRI_TEST_HANDLER=$1
  CRI_TEST_KEEP=${2:-}
  CRI_TEST_PASSED=0
  CRI_TEST_FAILED=0
  _cri_reap_stale
  CRI_TEST_WORK=$(mktemp -d /tmp/kcri-test.XXXXXX) || exit 1
  echo "$$ $(_cri_proc_start $$)" >"$CRI_TEST_WORK/owner"
  trap cri_test_finish EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

cri_test_pass() { echo "PASS: $* [$CRI_TEST_HANDLER]"; CRI_TEST_PASSED=$((CRI_TEST_PASSED + 1)); }
cri_test_fail() { echo "FAIL: $* [$CRI_TEST_HANDLER]"; CRI_TEST_FAILED=$((CRI_TEST_FAILED + 1)); }

cri_test_setup() {
  local t0=$SECONDS
  if cri_setup --dir "$CRI_TEST_WORK" "$@" 2>"$CRI_TEST_WORK/setup.log"; then
    cri_test_pass "setup: containerd + CRI + CNI in netns $CRI_NETNS ($((SECONDS - t0))s)"
    return 0
  fi
  cri_test_fail "setup: $(grep -v '^cri: containerd (CRI) up' "$CRI_TEST_WORK/setup.log" | tail -5)"
  return 1
}

# The kata world of a test: guest assets as e2e_setup makes them (cached under
# KATA_TEST_GUEST_DIR / KATA_CACHE_DIR), a kata configuration written by tests/e2e/lib.sh's
# e2e_write_kata_config (the caller sources it), then cri_test_setup with the kata handler.
cri_test_kata_setup() { # AGENT SHIM
  local agent=$1 shim=$2 assets out kernel initrd
  assets=${KATA_TEST_GUEST_DIR:-${KATA_CACHE_DIR:-/var/cache/kata-cpp}/e2e-assets}
  if ! out=$("$_cri_here/../../tools/osbuilder/build-guest-assets.sh" --agent "$agent" \
    --out-dir "$assets" --debug-console 2>"$CRI_TEST_WORK.assets.log"); then
    cri_test_fail "setup: build-guest-assets.sh failed: $(tail -5 "$CRI_TEST_WORK.assets.log")"
    rm -f "$CRI_TEST_WORK.assets.log"
    return 1
  fi
  rm -f "$CRI_TEST_WORK.assets.log"
  kernel=$(sed -n 's/^kernel=//p' <<<"$out")
  initrd=$(sed -n 's/^initrd=//p' <<<"$out")
  if [ -z "$kernel" ] || [ -z "$initrd" ]; then
    cri_test_fail "setup: build-guest-assets.sh printed no kernel/initrd: $out"
    return 1
  fi
  e2e_write_kata_config "$CRI_TEST_WORK/configuration-qemu.toml" "$kernel" "$initrd"
  # The pod's resources size its VM (the last section e2e_write_kata_config writes is [runtime]),
  # and the shim and QEMU run in the pod's cgroup, where the node accounts for them.
  printf 'static_sandbox_resource_mgmt = true\nsandbox_cgroup_only = true\n' \
    >>"$CRI_TEST_WORK/configuration-qemu.toml"
  cri_test_setup --kata-shim "$shim" --kata-config "$CRI_TEST_WORK/configuration-qemu.toml"
}

cri_test_scenario() {
  cri_test_scenario_script "$_cri_here/cri_scenario.py" "$@"
}

# Runs SCRIPT (a Python scenario printing PASS:/FAIL: lines) in the test's netns, counting its
# checks.
cri_test_scenario_script() { # SCRIPT [ARGS...]
  local script=$1 line rc
  shift
  while IFS= read -r line; do
    echo "$line"
    case $line in
      PASS:*) CRI_TEST_PASSED=$((CRI_TEST_PASSED + 1)) ;;
      FAIL:*) CRI_TEST_FAILED=$((CRI_TEST_FAILED + 1)) ;;
    esac
  done < <(cri_netns "$CRI_PYTHON" -u "$script" "$@" 2>&1)
  wait $! 2>/dev/null
  rc=$?
  # A scenario that died without reporting a failure is a failure of its own.
  if [ "$rc" != 0 ] && [ "$CRI_TEST_FAILED" = 0 ]; then
    cri_test_fail "scenario: ${script##*/} exited with status $rc"
  fi
}

cri_test_finish() {
  local rc=$? left
  trap - EXIT INT TERM
  # An interrupted run (the INT/TERM traps exit 130/143), or one that stopped early for a
  # reason not yet reported, is a failure even if every check so far passed.
  if [ "$rc" != 0 ] && [ "$CRI_TEST_FAILED" = 0 ]; then
    if [ "$rc" -gt 128 ]; then
      cri_test_fail "run: interrupted (signal $((rc - 128)))"
    else
      cri_test_fail "run: stopped early with status $rc"
    fi
  fi
  if [ "$CRI_TEST_FAILED" != 0 ] && [ -f "$CRI_TEST_WORK/containerd.log" ]; then
    echo "--- last lines of $CRI_TEST_WORK/containerd.log with level=error:"
    grep 'level=error' "$CRI_TEST_WORK/containerd.log" | tail -8 | cut -c1-400
    echo "---"
  fi
  cri_teardown --dir "$CRI_TEST_WORK"
  rm -f "$CRI_TEST_WORK/owner"   # torn down: not for the next run to reap
  if left=$(cri_leftovers); then
    cri_test_pass "teardown: no mounts, netns, processes, CNI cache entries or cgroups left"
  else
    cri_test_fail "teardown: left behind: $left"
  fi
  if [ -z "$(_cri_mounts_under "$CRI_TEST_WORK")" ]; then
    if [ "$CRI_TEST_FAILED" = 0 ] && [ -z "$CRI_TEST_KEEP" ]; then
      rm -rf "$CRI_TEST_WORK"
    else
      echo "work dir kept: $CRI_TEST_WORK"
    fi
  fi
  echo "$CRI_TEST_PASSED passed, $CRI_TEST_FAILED failed"
  [ "$CRI_TEST_FAILED" = 0 ] || exit 1
  exit 0
}
