#!/usr/bin/env bash
# check-format.sh [FILE...]: fails when a C/C++ file is not formatted as the repo's .clang-format
# says, printing each such file with the first lines clang-format would change (fix them with
# `clang-format -i FILE`). Default: every tracked *.cpp *.h *.cc *.hpp except tests/cri/.
# CLANG_FORMAT=... picks the binary (default: clang-format, Debian 12's is 14; other versions
# may format differently). Exit 0: clean; 1: files differ; 2: cannot run.
set -euo pipefail
args=()
for a in "$@"; do args+=("$(realpath -m -- "$a")"); done # FILE... as given, from any cwd
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

clang_format=${CLANG_FORMAT:-clang-format}
max_lines=20 # of each file's diff

die() { echo "check-format: $*" >&2; exit 2; }
command -v "$clang_format" >/dev/null ||
  die "$clang_format is not installed (bash utils/install-deps.sh installs it)"
[ -f .clang-format ] || die "no .clang-format at the top of the tree"

if ((${#args[@]})); then
  files=("${args[@]}")
else
  # Not checked: tests/cri/ (owned and formatted separately). Nothing tracked is generated or
  # third-party; add such paths here as ':(exclude)PATH' when there are.
  mapfile -t files < <(git ls-files -- '*.cpp' '*.h' '*.cc' '*.hpp' ':(exclude)tests/cri/**')
  ((${#files[@]})) || die "git ls-files found no C/C++ files (not a git checkout?)"
fi

checked=0
bad=()
for f in "${files[@]}"; do
  if [ ! -f "$f" ]; then
    ((${#args[@]} == 0)) || die "$f: no such file"
    continue # tracked but deleted in the work tree
  fi
  checked=$((checked + 1))
  if ! "$clang_format" --style=file --dry-run -Werror "$f" >/dev/null 2>&1; then
    bad+=("$f")
    echo "== $f: not clang-formatted; first differing lines:"
    diff -u --label "$f" --label "$f (clang-format)" "$f" <("$clang_format" --style=file "$f") |
      head -n "$max_lines" || true
    echo
  fi
done

version=$("$clang_format" --version)
if ((${#bad[@]})); then
  echo "check-format: ${#bad[@]} of $checked files differ from $version; run:"
  printf '  clang-format -i %s\n' "${bad[@]}"
  exit 1
fi
echo "check-format: $checked files clean ($version)"
