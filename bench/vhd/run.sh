#!/usr/bin/env bash
# Builds and runs the VHDX-vs-raw benchmark. Usage: bench/vhd/run.sh [DIR] [SIZE_MiB] [REPS]
# (run `make` first; DIR defaults to a temp dir under /var/tmp, on a real filesystem).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$(mktemp -d /var/tmp/vhdbench.XXXXXX)}
out=$(mktemp -d)
trap 'rm -rf "$out"; [ -z "${1:-}" ] && rm -rf "$dir"' EXIT
cc -O2 -std=c17 -D_GNU_SOURCE -I"$root/include" "$root/bench/vhd/vhd_bench.c" \
   "$root/build/obj/vhd/libviridian_vhd.a" -lpthread -o "$out/vhd_bench"
"$out/vhd_bench" "$dir" "${2:-1024}" "${3:-3}"
