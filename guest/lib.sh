# shellcheck shell=bash
# guest/lib.sh: helpers for tests that boot the default test guest.
# Source it (bash): . guest/lib.sh
#
#   viridian_guest_dir                 the image cache folder (vmlinuz, initramfs.cpio.gz, manifest)
#   viridian_cmdline_arg SCRIPT        "viridian.cmd=<base64>" for the kernel command line
#                                      (viridian.cmdz=<base64 of gzip> when that is much shorter
#                                      and the plain form is long; the guest's /init takes both)
#   viridian_mark LOG NAME             value of the first "VIRIDIAN-MARK: NAME=V" (prints V) or
#                                      "VIRIDIAN-MARK: NAME rest" (prints rest) line in LOG;
#                                      status 1 if there is none
#   viridian_mark_uptime LOG NAME      the uptime=S value of marker NAME (init-start, cmd-start, ...)
#   viridian_marks LOG                 all marker lines, without the prefix
# Markers may follow other text on a line (kernel messages can interleave), so
# they are matched anywhere in a line, and a trailing \r is ignored.

viridian_guest_dir() {
  echo "${VIRIDIAN_GUEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/viridian/guest}"
}

viridian_cmdline_arg() {
  local script=$1 b z
  b=$(printf '%s\n' "$script" | base64 -w0)
  if [ ${#b} -gt 768 ]; then
    z=$(printf '%s\n' "$script" | gzip -9n | base64 -w0)
    if [ $(( ${#z} * 4 )) -lt $(( ${#b} * 3 )) ]; then echo "viridian.cmdz=$z"; return 0; fi
  fi
  echo "viridian.cmd=$b"
}

viridian_marks() {
  sed -n 's/\r$//; s/.*VIRIDIAN-MARK: //p' "$1"
}

viridian_mark() {
  local log=$1 name=$2 line
  line=$(viridian_marks "$log" | grep -m1 -E "^${name}([= ]|$)") || return 1
  case "$line" in
    "$name="*) line=${line#"$name="}; echo "${line%% *}" ;;
    *) line=${line#"$name"}; echo "${line# }" ;;
  esac
}

viridian_mark_uptime() {
  local rest
  rest=$(viridian_mark "$1" "$2") || return 1
  rest=${rest##*uptime=}
  echo "${rest%% *}"
}
