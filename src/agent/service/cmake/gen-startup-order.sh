#!/bin/sh
# Regenerates startup-order.txt, the functions kata-agent runs from its start to serving the
# first requests of a shim (Check, CreateSandbox, GetGuestDetails, GetMetrics), both as a plain
# process and as PID 1 in fresh namespaces (the guest's path). The link puts them side by side
# (lld --symbol-ordering-file): the kernel maps a binary's pages 64 KiB at a time around each
# page fault, so start-up code spread over the whole .text makes almost all of it resident,
# while packed together it stays a few hundred KiB. Names that no longer exist are ignored by
# the link, so a stale list only costs memory; rerun this after large changes to the agent.
#
# usage: gen-startup-order.sh KATA_AGENT KATA_AGENT_CTL [OUTPUT]   (as root; needs valgrind;
#        KEEP=1 keeps the temporary directory with the agent logs and callgrind files)
set -eu
agent=$1
ctl=$2
out=${3:-$(cd "$(dirname "$0")" && pwd)/startup-order.txt}
command -v valgrind >/dev/null || { echo "gen-startup-order: valgrind is not installed" >&2; exit 1; }
tmp=$(mktemp -d /tmp/kata-agent-order.XXXXXX)
vg=
cleanup() {
    [ -n "$vg" ] && kill -KILL "$vg" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT; [ -n "${KEEP:-}" ] && trap - EXIT

# callgrind writes a dump every few thousand basic blocks, so killing the agent loses nothing
# that matters (an agent that is PID 1 ignores SIGTERM).
callgrind="valgrind --tool=callgrind --demangle=no --dump-every-bb=20000"

drive() {
    i=0
    while [ ! -S "$1" ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
    "$ctl" connect --server-address "unix://$1" --timeout 120 -c Check \
        -c "CreateSandbox hostname=pod sandbox_id=order" -c GetGuestDetails -c GetMetrics \
        -c Check -c Check -c Check >/dev/null
}

run() {  # name, then the command line that starts the agent
    name=$1
    shift
    mkdir -p "$tmp/$name/run"
    "$@" --server-addr "unix://$tmp/$name/sock" --run-dir "$tmp/$name/run" --log-level warn \
        >"$tmp/$name/log" 2>&1 &
    vg=$!
    drive "$tmp/$name/sock"
    sleep 1
    kill -KILL "$vg"
    wait "$vg" 2>/dev/null || true
    vg=
}

# shellcheck disable=SC2086  # $callgrind is a command line, split into its words on purpose (POSIX sh: no arrays)
run plain $callgrind --callgrind-out-file="$tmp/plain/cg" "$agent"
# shellcheck disable=SC2086  # as above
run init unshare --pid --fork --kill-child --mount --propagation private --net --uts --ipc \
    $callgrind --callgrind-out-file="$tmp/init/cg" "$agent"

# "fn=(id) name" / "cfn=(id) name" name a function the first time; "'N" marks recursion depth.
cat "$tmp"/*/cg* | sed -n -E "s/^c?fn=\([0-9]+\) (.*)$/\1/p" | sed -E "s/'[0-9]+$//" |
    grep -v -e '^(below main)$' -e '^0x' | sort -u >"$tmp/order"
n=$(wc -l <"$tmp/order")
if [ "$n" -lt 200 ]; then
    echo "gen-startup-order: only $n functions seen; agent log:" >&2
    cat "$tmp"/*/log >&2
    exit 1
fi
mv "$tmp/order" "$out"
echo "gen-startup-order: $n functions -> $out"
