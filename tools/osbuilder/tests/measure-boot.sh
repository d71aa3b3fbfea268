#!/usr/bin/env bash
# measure-boot.sh [--runs N] [--kernel-dir DIR]... [--firmware seabios|qboot]...
#                 [--compression none|gzip|zstd|xz]... [--bzimage] [--qemu-arg ARG]...
#
# Boot-to-/init measurements under QEMU (q35, TCG, -m 512): for every combination of
# kernel dir (default: Debian's, from fetch-debian-kernel.sh), firmware and initrd
# compression, boots an initrd whose /init prints the guest uptime and powers off, N times
# (rounds interleaved, so background load hits every variant alike). Prints the median
# and range of the wall time (QEMU start to exit) and of the guest uptime at /init.
# --bzimage adds Debian's compressed vmlinuz as a kernel variant. --qemu-arg passes an
# argument to every QEMU: "--qemu-arg -icount --qemu-arg shift=0,sleep=off" makes guest time
# count instructions, so the uptime column stops depending on host load (the wall column
# then means nothing). Not a CTest test.
source "$(dirname "$0")/lib.sh"

runs=3
kdirs=() firmwares=() comps=() bzimage=0 qargs=()
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --kernel-dir) kdirs+=("$2"); shift 2 ;;
    --firmware) firmwares+=("$2"); shift 2 ;;
    --compression) comps+=("$2"); shift 2 ;;
    --bzimage) bzimage=1; shift ;;
    --qemu-arg) qargs+=("$2"); shift 2 ;;
    *) fail "unknown argument $1" ;;
  esac
done
((${#kdirs[@]})) || kdirs=("$(debian_kernel)")
((${#firmwares[@]})) || firmwares=(seabios qboot)
((${#comps[@]})) || comps=(none)

# shellcheck disable=SC2016  # $(...) is for the guest's /init to expand, not this shell
printf '#!/bin/sh\nmount -t proc proc /proc\necho "MEASURE: init at uptime $(cut -d" " -f1 /proc/uptime)"\npoweroff -f\n' >"$T/init"
chmod 0755 "$T/init"
mkdir -p "$T/share"

variants=()
for k in "${kdirs[@]}"; do
  kernels=("$k/vmlinux")
  [ "$bzimage" = 1 ] && [ -f "$k/vmlinuz" ] && kernels+=("$k/vmlinuz")
  for c in "${comps[@]}"; do
    initrd="$T/initrd-$(basename "$k")-$c"
    [ -f "$initrd" ] || "$OSBUILDER" initrd --agent "$T/init" --kernel-dir "$k" --out "$initrd" --compression "$c" --debug-console >/dev/null 2>&1
    for kern in "${kernels[@]}"; do
      for fw in "${firmwares[@]}"; do
        variants+=("$kern|$initrd|$fw")
      done
    done
  done
done

for ((r = 1; r <= runs; r++)); do
  for i in "${!variants[@]}"; do
    IFS='|' read -r kern initrd fw <<<"${variants[$i]}"
    fwargs=(${qargs[@]+"${qargs[@]}"})
    [ "$fw" = qboot ] && fwargs+=(-bios /usr/share/qemu/qboot.rom)
    start=$(now)
    boot_qemu "$kern" "$initrd" "$T/console-$i-$r.log" "$T/share" ${fwargs[@]+"${fwargs[@]}"}
    wall=$(elapsed "$start")
    up=$(sed -n 's/.*MEASURE: init at uptime \([0-9.]*\).*/\1/p' "$T/console-$i-$r.log")
    [ -n "$up" ] || { cat "$T/console-$i-$r.log" >&2; fail "no uptime from ${variants[$i]}"; }
    echo "$i $wall $up" >>"$T/results"
  done
done

stats() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f (%.2f-%.2f)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
printf '%-58s %-8s %-6s %-22s %s\n' kernel firmware initrd "wall s: median (range)" "uptime at /init"
for i in "${!variants[@]}"; do
  IFS='|' read -r kern initrd fw <<<"${variants[$i]}"
  printf '%-58s %-8s %-6s %-22s %s\n' "${kern#"${KATA_CACHE_DIR:-/var/cache/kata-cpp}"/kernel/}" "$fw" "${initrd##*-}" \
    "$(awk -v i="$i" '$1 == i { print $2 }' "$T/results" | stats)" \
    "$(awk -v i="$i" '$1 == i { print $3 }' "$T/results" | stats)"
done
echo "($runs runs each, load average $(cut -d' ' -f1-3 /proc/loadavg))"
