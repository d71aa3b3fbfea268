#!/usr/bin/env bash
# versions.sh KEY [FILE]: print the scalar at the dotted KEY (e.g. assets.kernel.debian.abi)
# of versions.yaml (default: the one at the repository root). Exit 1 if the key is absent.
#
# Understands the subset versions.yaml uses: nested maps indented with spaces, scalar
# values (plain, "double" or 'single' quoted), full-line and trailing comments.
set -euo pipefail
key=${1:?usage: versions.sh KEY [FILE]}
file=${2:-${KATA_VERSIONS_FILE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/versions.yaml}}
[ -r "$file" ] || { echo "versions.sh: cannot read $file" >&2; exit 2; }
awk -v want="$key" '
  /^[[:space:]]*(#.*)?$/ { next }
  {
    match($0, /^ */); ind = RLENGTH
    line = substr($0, ind + 1)
    c = index(line, ":")
    if (c == 0 || line ~ /^- /) next
    k = substr(line, 1, c - 1)
    v = substr(line, c + 1)
    while (depth > 0 && indent[depth] >= ind) depth--
    depth++; indent[depth] = ind; name[depth] = k
    path = name[1]
    for (i = 2; i <= depth; i++) path = path "." name[i]
    if (path != want) next
    sub(/^[[:space:]]+/, "", v)
    if (v ~ /^"/) { v = substr(v, 2); sub(/".*$/, "", v) }
    else if (v ~ /^'\''/) { v = substr(v, 2); sub(/'\''.*$/, "", v) }
    else { sub(/[[:space:]]+#.*$/, "", v); sub(/[[:space:]]+$/, "", v) }
    if (v == "") { print "versions.sh: " want " is a map, not a value" > "/dev/stderr"; ismap = 1; exit }
    print v; found = 1; exit
  }
  END { if (ismap) exit 3; if (!found) exit 1 }
' "$file" || { rc=$?; [ $rc -eq 1 ] && echo "versions.sh: key $key not found in $file" >&2; exit $rc; }
