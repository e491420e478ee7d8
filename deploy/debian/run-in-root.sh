#!/usr/bin/env bash
# Run the shell script on standard input inside the Debian root DIR, as root, with NAME=VALUE set:
#
#   deploy/debian/run-in-root.sh build/roots/check-arm64 DEMO_SECONDS=60 <in-root-check.sh
#
# The root gets its own network namespace with loopback only (nothing inside reaches any network), its
# own PID namespace (every process it started ends with the script) and mount namespace (its /proc and
# /dev go away with it). A foreign-architecture root runs under qemu-user-static through binfmt.
set -euo pipefail

ROOT=${1:?usage: run-in-root.sh DIR [NAME=VALUE...] <script}
shift
[[ -x $ROOT/bin/sh ]] || { echo "run-in-root.sh: $ROOT is not a root file system" >&2; exit 2; }
# shellcheck disable=SC2016  # expanded by the inner sh
exec unshare --net --pid --fork --mount-proc="$ROOT/proc" \
    sh -c 'root=$1 && shift && mount --rbind /dev "$root/dev" && ip link set lo up &&
        exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb "$@" /bin/sh -s' sh "$ROOT" "$@"
