#!/bin/sh
# Linker launcher for binaries that carry their libraries inside (the fully static kata-agent,
# and the shim, which links protobuf and libstdc++ statically to stay small in memory): imported
# targets hand the link line absolute paths of shared libraries (libprotobuf.so ...); each
# "<dir>/libX.so" whose "<dir>/libX.a" exists is swapped for it. Everything else is passed
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
