#!/usr/bin/env bash
# Remove fieldgate installed by install.sh.
#
# Keeps the site's data by default: /etc/fieldgate (config, credentials), /var/lib/fieldgate
# (the journal: readings not yet delivered upstream) and the fieldgate user. --purge removes
# those as well. Takes the same --root DIR / $DESTDIR and --dry-run as install.sh.
set -euo pipefail

PREFIX=/opt/fieldgate
CONF_DIR=/etc/fieldgate
STATE_DIR=/var/lib/fieldgate
UNIT=/etc/systemd/system/fieldgate.service
RULES=/etc/udev/rules.d/99-fieldgate-rs485.rules
SERVICE=fieldgate.service
SERVICE_USER=fieldgate

ROOT=${DESTDIR:-/}
DRY_RUN=0
PURGE=0

usage() {
    cat <<'EOF'
Usage: uninstall.sh [--purge] [--root DIR] [--dry-run]

  --purge     also delete /etc/fieldgate, /var/lib/fieldgate (undelivered readings!) and the user
  --root DIR  remove files under DIR (also $DESTDIR); leave the running system alone
  --dry-run   print every command instead of running it
EOF
}

# die, note, run (honours --dry-run), target (a path inside --root), live_system
# shellcheck source=SCRIPTDIR/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

parse_args() {
    while (($#)); do
        case $1 in
        --purge) PURGE=1 ;;
        --root)
            (($# >= 2)) || die "--root needs a directory"
            ROOT=$2
            shift
            ;;
        --dry-run) DRY_RUN=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown option '$1' (see --help)" ;;
        esac
        shift
    done
    [[ $ROOT == /* ]] || die "--root must be an absolute path, got '$ROOT'"
    live_system || [[ -d $ROOT ]] || die "--root $ROOT does not exist"
    if live_system && ! ((DRY_RUN)) && ((EUID != 0)); then
        die "run as root (sudo), or use --dry-run / --root DIR"
    fi
}

stop_service() {
    if ! live_system; then
        note "skip stopping the service: working under $ROOT"
        return
    fi
    if [[ -d /run/systemd/system ]]; then
        # Stopping flushes the journal (TimeoutStopSec); readings stay in the state directory.
        run systemctl disable --now "$SERVICE" || note "service was not enabled"
    elif [[ -e $UNIT ]]; then
        run systemctl disable "$SERVICE"
    fi
}

remove_program() {
    note "removing program, unit and udev rules"
    run rm -f "$(target "$UNIT")" "$(target "$RULES")"
    run rm -rf "$(target "$PREFIX")"
    if live_system; then
        [[ -d /run/systemd/system ]] && run systemctl daemon-reload
        if command -v udevadm >/dev/null && [[ -d /run/udev ]]; then
            run udevadm control --reload-rules
        fi
    fi
}

remove_data() {
    if ! ((PURGE)); then
        note "kept $CONF_DIR, $STATE_DIR and user $SERVICE_USER (use --purge to delete them)"
        return
    fi
    note "purging config, credentials and state (undelivered readings are lost)"
    run rm -rf "$(target "$CONF_DIR")" "$(target "$STATE_DIR")"
    if live_system && getent passwd "$SERVICE_USER" >/dev/null; then
        run userdel "$SERVICE_USER"
    fi
}

main() {
    parse_args "$@"
    ((DRY_RUN)) && note "dry run: nothing is changed"
    stop_service
    remove_program
    remove_data
    note "done"
}

main "$@"
