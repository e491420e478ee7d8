#!/usr/bin/env bash
# Run the shell script on standard input inside the Debian root DIR, as root, with NAME=VALUE set:
#
#   deploy/debian/run-in-root.sh build/roots/check-arm64 DEMO_SECONDS=60 <in-root-check.sh
#
# The root gets its own network namespace with loopback only (nothing inside reaches any network), its
# own PID namespace (every process it started ends with the script) and mount namespace (its /proc, /sys
# and /dev go away with it). A foreign-architecture root runs under qemu-user-static through binfmt.
set -euo pipefail

ROOT=${1:?usage: run-in-root.sh DIR [NAME=VALUE...] <script}
shift
[[ -x $ROOT/bin/sh ]] || { echo "run-in-root.sh: $ROOT is not a root file system" >&2; exit 2; }
# /sys only for a root of this machine's architecture: under qemu-user it describes the host's CPUs
# while /proc/cpuinfo is qemu's, and ONNX Runtime's cpuinfo then crashes (SIGSEGV); without /sys it
# warns and runs. A real arm64 box has both of its own.
machine() { od -An -tu2 -j18 -N2 "$1" | tr -d ' '; } # ELF e_machine
sys=true
[[ $(machine "$ROOT/usr/bin/dpkg") == "$(machine /usr/bin/dpkg)" ]] || sys=false
# shellcheck disable=SC2016  # expanded by the inner sh
exec unshare --net --pid --fork --mount-proc="$ROOT/proc" \
    sh -c 'root=$1 && sys=$2 && shift 2 && mount --rbind /dev "$root/dev" &&
        { ! $sys || mount -t sysfs sysfs "$root/sys"; } && ip link set lo up &&
        exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb "$@" /bin/sh -s' sh "$ROOT" "$sys" "$@"
