#!/usr/bin/env bash
# Install a fieldgate .deb offline in a fresh Debian Bookworm root of its architecture and prove it there
# (in-root-check.sh): dpkg -i with no network, validate every example site, systemd-analyze verify, the
# baseline ONNX model on a frame, the demo site with its simulator and mosquitto for DEMO_SECONDS (60).
#
#   deploy/debian/check-in-root.sh arm64 dist/fieldgate_0.1.0-1_arm64.deb     # make arm64-check
#
# arm64 runs under qemu-user-static (binfmt): every figure it prints is an EMULATED one. Only the .deb is
# copied into the root; the check script arrives on standard input and runs with loopback only
# (run-in-root.sh). Needs root. Output: the log, then its CHECK and FIGURE lines.
#
# Environment: WORK (the root, default build/roots/check-ARCH), DEMO_SECONDS.
set -euo pipefail

ARCH=${1:?usage: check-in-root.sh arm64|amd64 DEB}
DEB=${2:?usage: check-in-root.sh arm64|amd64 DEB}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOT=${WORK:-$REPO/build/roots/check-$ARCH}
DEMO_SECONDS=${DEMO_SECONDS:-60}

[[ -f $DEB ]] || { echo "check-in-root.sh: no such package: $DEB" >&2; exit 2; }
((EUID == 0)) || { echo "check-in-root.sh: run as root (debootstrap, chroot, namespaces)" >&2; exit 2; }
case $(dpkg-deb --field "$DEB" Architecture) in
"$ARCH") ;;
*) echo "check-in-root.sh: $DEB is not an $ARCH package" >&2; exit 2 ;;
esac

"$HERE/bookworm-root.sh" "$ARCH" "$ROOT"
cp "$DEB" "$ROOT/tmp/"
echo "==> in the $ARCH root $ROOT$( [[ $ARCH != "$(dpkg --print-architecture)" ]] && echo ' (EMULATED: qemu-user)')"
started=$(date +%s)
set +e
"$HERE/run-in-root.sh" "$ROOT" DEMO_SECONDS="$DEMO_SECONDS" <"$HERE/in-root-check.sh" 2>&1 | tee "$ROOT.log"
rc=${PIPESTATUS[0]}
set -e
echo "==> $ARCH check: $( ((rc == 0)) && echo passed || echo "FAILED (exit $rc)") in $(($(date +%s) - started)) s; log $ROOT.log"
grep -E '^(CHECK|FIGURE) ' "$ROOT.log" || true
exit "$rc"
