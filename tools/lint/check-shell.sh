#!/usr/bin/env bash
# check-shell.sh [FILE...]: runs shellcheck over the repo's shell scripts and fails when it
# reports anything. Default: every tracked *.sh plus every tracked file whose first line is a
# sh/bash/dash shebang (e.g. .ci/run), except tests/cri/. Sourced files are followed (-x) from
# the sourcing script's directory (-P SCRIPTDIR), so `source "$(dirname "$0")/lib.sh"` resolves.
# A deliberate construct gets a targeted `# shellcheck disable=SCxxxx  # reason` where it is.
# SHELLCHECK=... picks the binary. Exit 0: clean; 1: shellcheck reported something; 2: cannot run.
set -euo pipefail
args=()
for a in "$@"; do args+=("$(realpath -m -- "$a")"); done # FILE... as given, from any cwd
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

shellcheck=${SHELLCHECK:-shellcheck}

die() { echo "check-shell: $*" >&2; exit 2; }
command -v "$shellcheck" >/dev/null ||
  die "$shellcheck is not installed (bash utils/install-deps.sh installs it)"

if ((${#args[@]})); then
  files=("${args[@]}")
else
  shebang='^#![[:space:]]*(/usr)?/bin/(env[[:space:]]+)?(ba|da)?sh([[:space:]]|$)'
  files=()
  while IFS= read -r f; do
    [ -f "$f" ] || continue # tracked but deleted in the work tree
    if [[ $f == *.sh ]]; then
      files+=("$f")
    else
      first=""
      IFS= read -r -n 200 first <"$f" 2>/dev/null || true
      if [[ $first =~ $shebang ]]; then files+=("$f"); fi
    fi
  done < <(git ls-files -- ':(exclude)tests/cri/**')
  ((${#files[@]})) || die "git ls-files found no shell scripts (not a git checkout?)"
fi

if "$shellcheck" --color=never -x -P SCRIPTDIR -- "${files[@]}"; then
  echo "check-shell: ${#files[@]} scripts clean (shellcheck $("$shellcheck" --version | sed -n 's/^version: //p'))"
else
  echo "check-shell: shellcheck reported the problems above (in ${#files[@]} scripts checked)"
  exit 1
fi
