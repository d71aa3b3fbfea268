#!/bin/sh
# Linker launcher for the fully static kata-agent: imported targets hand the link line absolute
# paths of shared libraries (libprotobuf.so ...); a -static link needs their .a siblings, so
# each "<dir>/libX.so" whose "<dir>/libX.a" exists is swapped for it. Everything else is passed
# through unchanged.
for arg in "$@"; do
  shift
  case "$arg" in
    /*.so)
      a="${arg%.so}.a"
      if [ -f "$a" ]; then arg="$a"; fi ;;
  esac
  set -- "$@" "$arg"
done
exec "$@"
