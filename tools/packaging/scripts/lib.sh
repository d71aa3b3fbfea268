# shellcheck shell=bash
# Shared helpers for the packaging and osbuilder scripts. Source it; do not run it.

KATA_REPO_ROOT=${KATA_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
KATA_CACHE_DIR=${KATA_CACHE_DIR:-/var/cache/kata-cpp}
KATA_PROG=${KATA_PROG:-$(basename "$0")}

kata_info() { echo "$KATA_PROG: $*" >&2; }
kata_warn() { echo "$KATA_PROG: warning: $*" >&2; }
kata_die() { echo "$KATA_PROG: error: $*" >&2; exit 1; }

# kata_version KEY: value of KEY in versions.yaml (dies naming the key when absent).
kata_version() {
  "$KATA_REPO_ROOT/tools/packaging/scripts/versions.sh" "$1" ||
    kata_die "versions.yaml has no value for $1"
}

kata_need_cmd() {
  local cmd pkg
  for cmd in "$@"; do
    pkg=${cmd#*:}; cmd=${cmd%%:*}
    command -v "$cmd" >/dev/null 2>&1 ||
      kata_die "$cmd not found (install the Debian package $pkg; see utils/install-deps.sh)"
  done
}

# kata_lock NAME: take an exclusive lock (released when the shell exits) so concurrent
# builds of the same cache entry wait for each other instead of racing.
kata_lock() {
  mkdir -p "$KATA_CACHE_DIR/locks" || kata_die "cannot create $KATA_CACHE_DIR/locks"
  local lockfile="$KATA_CACHE_DIR/locks/$1.lock"
  exec {KATA_LOCK_FD}>"$lockfile" || kata_die "cannot open lock $lockfile"
  if ! flock -n "$KATA_LOCK_FD"; then
    kata_info "waiting for lock $lockfile"
    flock "$KATA_LOCK_FD"
  fi
}

# kata_hash FILE...: one sha256 over the names and contents of the files given.
kata_hash() {
  local f
  for f in "$@"; do
    printf '%s\n' "$(basename "$f")"
    sha256sum <"$f"
  done | sha256sum | cut -d' ' -f1
}

# kata_module_order MODDIR: the modules listed in MODDIR/modules.dep (paths relative to
# MODDIR) in an order where every module follows all modules it depends on. Deterministic:
# roots are visited in sorted order.
kata_module_order() {
  local dep="$1/modules.dep"
  [ -r "$dep" ] || kata_die "cannot read $dep (run depmod -b)"
  LC_ALL=C sort "$dep" | awk '
    function visit(m,   n, d, i) {
      if (m in done) return
      if (m in active) { print "module dependency cycle at " m > "/dev/stderr"; exit 1 }
      if (!(m in deps)) { print "module " m " is listed as a dependency but not in modules.dep" > "/dev/stderr"; exit 1 }
      active[m] = 1
      n = split(deps[m], d, " ")
      for (i = n; i >= 1; i--) visit(d[i])
      delete active[m]
      done[m] = 1
      print m
    }
    {
      m = $1; sub(/:$/, "", m)
      rest = $0; sub(/^[^:]*:[[:space:]]*/, "", rest)
      deps[m] = rest; order[++count] = m
    }
    END { for (i = 1; i <= count; i++) visit(order[i]) }
  '
}

# kata_extract_vmlinux VMLINUZ OUT: cut the compressed kernel out of a bzImage at the
# first xz or zstd magic that decompresses to an ELF, and write the ELF to OUT.
kata_extract_vmlinux() {
  local in=$1 out=$2 off
  local -a offsets
  mapfile -t offsets < <(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$in" | cut -d: -f1 | sed 's/^/xz:/')
  mapfile -t -O "${#offsets[@]}" offsets < <(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$in" | cut -d: -f1 | sed 's/^/zstd:/')
  for off in "${offsets[@]}"; do
    case ${off%%:*} in
      xz) tail -c +$((${off#*:} + 1)) "$in" | xz -dc --single-stream >"$out" 2>/dev/null || true ;;
      zstd) tail -c +$((${off#*:} + 1)) "$in" | zstd -dcq >"$out" 2>/dev/null || true ;;
    esac
    if [ "$(head -c 4 "$out" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
      return 0
    fi
  done
  rm -f "$out"
  kata_die "no xz or zstd compressed ELF kernel found in $in (tried ${#offsets[@]} offsets)"
}

# kata_check_pvh VMLINUX: the file is an x86-64 ELF carrying the Xen ELF note
# XEN_ELFNOTE_PHYS32_ENTRY (type 18), the PVH entry point QEMU's -kernel uses.
kata_check_pvh() {
  local f=$1 header notes
  # (captured first: grep -q closing the pipe early would fail the pipeline under pipefail)
  header=$(readelf -h "$f" 2>/dev/null) || true
  notes=$(readelf -nW "$f" 2>/dev/null) || true
  grep -q 'Machine:.*X86-64' <<<"$header" ||
    kata_die "$f is not an x86-64 ELF kernel"
  grep -Eq '^[[:space:]]*Xen[[:space:]].*(\(0x00000012\)|PHYS32_ENTRY)' <<<"$notes" ||
    kata_die "$f has no PVH entry note (Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY); QEMU cannot boot it directly"
}

# kata_apt_has PKG VERSION: the apt archive offers exactly this version of PKG.
# (apt-cache show PKG=VER exits 0 even when the version does not exist.)
kata_apt_has() {
  apt-cache madison "$1" 2>/dev/null | awk -F'|' -v v="$2" '{ gsub(/[[:space:]]/, "", $2) } $2 == v { found = 1 } END { exit !found }'
}
