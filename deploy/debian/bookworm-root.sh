#!/usr/bin/env bash
# A fresh Debian Bookworm root for ARCH (arm64: under qemu-user-static through binfmt) in DIR.
#
#   deploy/debian/bookworm-root.sh arm64 /var/tmp/root
#
# The first call runs debootstrap and keeps the result as build/roots/bookworm-ARCH.tar (and the .debs it
# fetched in build/roots/debs-ARCH); later calls unpack that in seconds. The base is what a Raspberry Pi
# OS image already has, not what fieldgate's package brings: python3 (3.11), systemd, procps, adduser, openssl,
# ca-certificates, plus mosquitto as the site's stand-in broker. It fetches from the host's Debian mirror
# with the host's CA bundle and proxy settings as they are (apt and debootstrap read them from the
# environment and /etc); nothing inside the root reaches the network afterwards.
#
# Environment: ROOTS (default build/roots), MIRROR (default: the host's first Debian mirror).
set -euo pipefail

ARCH=${1:?usage: bookworm-root.sh arm64|amd64 DIR}
DIR=${2:?usage: bookworm-root.sh arm64|amd64 DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOTS=${ROOTS:-$REPO/build/roots}
BASE=$ROOTS/bookworm-$ARCH.tar
INCLUDE=systemd,procps,adduser,python3,mosquitto,openssl,ca-certificates

note() { echo "==> $*"; }

host_mirror() {
    local uri
    uri=$(grep -h -o -m1 -E 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list 2>/dev/null | head -n 1 | tr -d ' ' || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

make_base() {
    local work=$ROOTS/debootstrap-$ARCH
    note "debootstrap $ARCH bookworm (once; kept as $BASE)"
    rm -rf "$work"
    mkdir -p "$ROOTS/debs-$ARCH"
    debootstrap --arch="$ARCH" --variant=minbase --include="$INCLUDE" --cache-dir="$ROOTS/debs-$ARCH" \
        bookworm "$work" "${MIRROR:-$(host_mirror)}" >"$ROOTS/debootstrap-$ARCH.log"
    # Nothing of the build machine's apt setup or package lists stays in the image.
    rm -rf "$work"/var/lib/apt/lists/* "$work"/var/cache/apt/archives/*.deb
    tar -C "$work" -cf "$BASE.part" .
    mv "$BASE.part" "$BASE"
    rm -rf "$work"
}

# A foreign root's programs run through qemu-user-static, registered with binfmt_misc (flag F: the
# emulator is opened at registration, so it need not exist inside the root).
ensure_binfmt() {
    [[ $ARCH == "$(dpkg --print-architecture)" ]] && return 0
    local handler
    handler=/proc/sys/fs/binfmt_misc/qemu-$(arch_to_qemu)
    [[ -e /proc/sys/fs/binfmt_misc/status ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [[ -e $handler ]] || update-binfmts --enable "qemu-$(arch_to_qemu)" >/dev/null 2>&1 || true
    if [[ ! -e $handler ]]; then
        echo "bookworm-root.sh: no binfmt handler for $ARCH (apt-get install qemu-user-static binfmt-support)" >&2
        exit 2
    fi
}

arch_to_qemu() {
    case $ARCH in
    arm64) echo aarch64 ;;
    amd64) echo x86_64 ;;
    *) echo "$ARCH" ;;
    esac
}

main() {
    mkdir -p "$ROOTS"
    ensure_binfmt
    [[ -f $BASE ]] || make_base
    rm -rf "$DIR"
    mkdir -p "$DIR"
    tar -C "$DIR" -xf "$BASE"
    note "fresh bookworm $ARCH root in $DIR"
}

main "$@"
