# Shared by install.sh and uninstall.sh (sourced, not run). Expects DRY_RUN and ROOT to be set.
# shellcheck shell=bash

die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 2
}

note() {
    echo "==> $*"
}

# Every change goes through run, so --dry-run prints exactly what a real run would do.
run() {
    if ((DRY_RUN)); then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# A path inside the target root.
target() {
    echo "${ROOT%/}$1"
}

live_system() {
    [[ $ROOT == / ]]
}
