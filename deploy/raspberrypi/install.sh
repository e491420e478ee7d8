#!/usr/bin/env bash
# Install fieldgate as a systemd service on Raspberry Pi OS Bookworm (arm64).
#
#   sudo deploy/raspberrypi/install.sh                       # online: apt + PyPI
#   sudo deploy/raspberrypi/install.sh --offline wheelhouse  # on site, no network
#   deploy/raspberrypi/install.sh --dry-run                  # print every step, change nothing
#   deploy/raspberrypi/install.sh --root /tmp/img            # lay the files out under a prefix
#
# Layout: virtualenv /opt/fieldgate/venv (the update slots in /opt/fieldgate/releases), config /etc/fieldgate (keys in
# /etc/fieldgate/credentials, root only; the status page's TLS pair in /etc/fieldgate/status-tls,
# made self-signed on the first run), state /var/lib/fieldgate, unit
# /etc/systemd/system/fieldgate.service, udev rules /etc/udev/rules.d/99-fieldgate-rs485.rules.
# Running it again upgrades in place and never overwrites site.yaml, credentials or the TLS pair.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)

PREFIX=/opt/fieldgate
VENV=$PREFIX/venv
# Software updates (docs/fleet.md): slots a and b and the link current, written by the daemon itself;
# current -> ../venv after every install, so the installed release is the one that runs.
RELEASES=$PREFIX/releases
CONF_DIR=/etc/fieldgate
CRED_DIR=$CONF_DIR/credentials
# status.tls: {} in site.yaml uses cert.pem and key.pem here (gateway/status/config.py).
STATUS_TLS_DIR=/etc/fieldgate/status-tls
STATE_DIR=/var/lib/fieldgate
UNIT_DIR=/etc/systemd/system
UDEV_DIR=/etc/udev/rules.d
SERVICE=fieldgate.service
SERVICE_USER=fieldgate
SERVICE_GROUPS=dialout,audio
CREDENTIALS=(tls-ca.pem tls-cert.pem tls-key.pem command-keys.pem)
# python3-systemd gives journald fields and sd_notify through libsystemd; espeak-ng, sox and
# alsa-utils drive spoken alerts and sirens on the audio output; openssl makes the status page's TLS pair.
# fonts-dejavu-core + fonts-droid-fallback: Latin and CJK glyphs for the commissioning report's PDF.
APT_PACKAGES=(python3 python3-venv python3-systemd ca-certificates openssl espeak-ng sox alsa-utils fonts-dejavu-core
              fonts-droid-fallback)
SYSTEMD_PY=/usr/lib/python3/dist-packages/systemd

ROOT=${DESTDIR:-/}
DRY_RUN=0
OFFLINE=""
EXTRAS=""
START=1

usage() {
    cat <<'EOF'
Usage: install.sh [--offline WHEELHOUSE] [--vision] [--no-start] [--root DIR] [--dry-run]

  --offline DIR  install Python packages only from DIR (built by `make wheelhouse` on an
                 arm64 Bookworm machine); .deb files in DIR/debs are installed with apt,
                 otherwise the system packages must already be present
  --vision       also install the camera/inference extra (numpy, onnxruntime, opencv)
  --no-start     install and enable, but do not (re)start the service
  --root DIR     lay files out under DIR (also $DESTDIR) and skip every step that acts on
                 the running system: packages, user, virtualenv, udev and systemd reloads
  --dry-run      print every command instead of running it; changes nothing
EOF
}

# die, note, run (honours --dry-run), target (a path inside --root), live_system
# shellcheck source=SCRIPTDIR/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

parse_args() {
    while (($#)); do
        case $1 in
        --offline)
            (($# >= 2)) || die "--offline needs a wheelhouse directory"
            OFFLINE=$2
            shift
            ;;
        --vision) EXTRAS="[vision]" ;;
        --no-start) START=0 ;;
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
    if [[ -n $OFFLINE ]]; then
        [[ -d $OFFLINE ]] || die "wheelhouse '$OFFLINE' is not a directory"
        OFFLINE=$(cd "$OFFLINE" && pwd)
        compgen -G "$OFFLINE/fieldgate-*.whl" >/dev/null ||
            die "wheelhouse '$OFFLINE' holds no fieldgate-*.whl; build it with 'make wheelhouse'"
    fi
}

preflight() {
    if live_system && ! ((DRY_RUN)) && ((EUID != 0)); then
        die "run as root (sudo), or use --dry-run / --root DIR"
    fi
    local arch codename
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-unknown}")
    if [[ $arch != arm64 || $codename != bookworm ]]; then
        note "warning: built for Raspberry Pi OS Bookworm arm64; this is $codename $arch"
    fi
}

install_packages() {
    if ! live_system; then
        note "skip system packages: staging into $ROOT"
        return
    fi
    if [[ -n $OFFLINE ]]; then
        if compgen -G "$OFFLINE/debs/*.deb" >/dev/null; then
            note "installing system packages from $OFFLINE/debs"
            run apt-get install -y --no-install-recommends "$OFFLINE"/debs/*.deb
        fi
        local missing=() pkg
        for pkg in "${APT_PACKAGES[@]}"; do
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
        done
        if ((${#missing[@]})); then
            if ((DRY_RUN)); then
                note "missing system packages (a real run stops here): ${missing[*]}"
            else
                die "offline install needs these packages first: ${missing[*]} (put their .deb files in $OFFLINE/debs)"
            fi
        fi
    else
        note "installing system packages"
        run apt-get update
        run apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
    fi
}

create_user() {
    if ! live_system; then
        note "skip service user: staging into $ROOT"
        return
    fi
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        note "creating system user $SERVICE_USER"
        run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "fieldgate gateway" "$SERVICE_USER"
    fi
    run usermod --append --groups "$SERVICE_GROUPS" "$SERVICE_USER"
}

# install -d with owner and group only on the live system (the user exists there).
make_dir() {
    local mode=$1 owner=$2 group=$3 dir=$4
    if live_system; then
        run install -d -m "$mode" -o "$owner" -g "$group" "$(target "$dir")"
    else
        run install -d -m "$mode" "$(target "$dir")"
    fi
}

install_file() {
    local mode=$1 owner=$2 group=$3 src=$4 dest=$5
    if live_system; then
        run install -m "$mode" -o "$owner" -g "$group" "$src" "$(target "$dest")"
    else
        run install -m "$mode" "$src" "$(target "$dest")"
    fi
}

install_layout() {
    note "installing files under $ROOT"
    make_dir 0755 root root "$PREFIX"
    # Group-writable: a configuration roll-out replaces site.yaml (the unit keeps credentials/ and
    # status-tls/ read-only); see docs/fleet.md.
    make_dir 0770 root "$SERVICE_USER" "$CONF_DIR"
    # Read by systemd (LoadCredential=) as root, never by the service user directly.
    make_dir 0700 root root "$CRED_DIR"
    make_dir 0750 "$SERVICE_USER" "$SERVICE_USER" "$STATE_DIR"
    make_dir 0755 "$SERVICE_USER" "$SERVICE_USER" "$RELEASES"
    run ln -sfn ../venv "$(target "$RELEASES/current")"
    make_dir 0755 root root "$UNIT_DIR"
    make_dir 0755 root root "$UDEV_DIR"
    install_file 0644 root root "$SCRIPT_DIR/fieldgate.service" "$UNIT_DIR/$SERVICE"
    install_file 0644 root root "$SCRIPT_DIR/99-fieldgate-rs485.rules" "$UDEV_DIR/99-fieldgate-rs485.rules"
    install_file 0644 root root "$SCRIPT_DIR/README.md" "$PREFIX/README.md"
    install_file 0640 root "$SERVICE_USER" "$SOURCE_DIR/config/demo.yaml" "$CONF_DIR/site.example.yaml"
    # Models and their manifests (cameras: detector.model: /opt/fieldgate/models/<name>.yaml);
    # device templates for site configs (template: radar-level).
    make_dir 0755 root root "$PREFIX/models"
    local file
    for file in "$SOURCE_DIR"/models/*.onnx "$SOURCE_DIR"/models/*.yaml "$SOURCE_DIR"/models/README.md; do
        [[ -e $file ]] && install_file 0644 root root "$file" "$PREFIX/models/$(basename "$file")"
    done
    make_dir 0755 root root "$PREFIX/config/devices"
    for file in "$SOURCE_DIR"/config/devices/*.yaml; do
        [[ -e $file ]] && install_file 0644 root root "$file" "$PREFIX/config/devices/$(basename "$file")"
    done
}

# The box's host name: from the image being staged (--root), else this machine's. Only
# [A-Za-z0-9.-] goes into the certificate request.
box_hostname() {
    local name
    if [[ -r $(target /etc/hostname) ]]; then
        name=$(head -n 1 "$(target /etc/hostname)")
    else
        name=$(hostname)
    fi
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]] || name=fieldgate
    echo "$name"
}

# A self-signed certificate for the status page (status.tls: {}), made once and then kept, so a
# browser's or client's trust in it survives upgrades. Replace both files with a certificate from
# the county CA at will. The key is readable by the service group only.
make_status_tls_pair() {
    local cert key host names addr
    cert=$(target "$STATUS_TLS_DIR/cert.pem")
    key=$(target "$STATUS_TLS_DIR/key.pem")
    make_dir 0750 root "$SERVICE_USER" "$STATUS_TLS_DIR"
    if [[ -e $cert && -e $key ]]; then
        note "keeping the status page TLS pair in $STATUS_TLS_DIR"
        return
    fi
    host=$(box_hostname)
    names="DNS:$host,DNS:$host.local,DNS:localhost,IP:127.0.0.1,IP:::1"
    if live_system; then
        for addr in $(hostname -I 2>/dev/null); do
            names+=",IP:$addr"
        done
    fi
    note "making a self-signed TLS pair for the status page: $names"
    (
        umask 077
        run openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -days 3650 -nodes \
            -subj "/CN=$host" -addext "subjectAltName=$names" -addext "basicConstraints=critical,CA:FALSE" \
            -addext "extendedKeyUsage=serverAuth" -keyout "$key" -out "$cert"
    )
    run chmod 0644 "$cert"
    run chmod 0640 "$key"
    if live_system; then
        run chown root:"$SERVICE_USER" "$key"
    fi
}

python_minor() {
    python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")'
}

install_venv() {
    if ! live_system; then
        note "skip virtualenv: staging into $ROOT (a venv is tied to its path; build it on the box)"
        return
    fi
    note "installing fieldgate into $VENV"
    [[ -x $VENV/bin/python ]] || run python3 -m venv "$VENV"
    if [[ -n $OFFLINE ]]; then
        run "$VENV/bin/pip" install --no-index --find-links "$OFFLINE" --upgrade "fieldgate$EXTRAS"
    else
        run "$VENV/bin/pip" install --upgrade "$SOURCE_DIR$EXTRAS"
    fi
    # pip wrote level-0 byte code; the service runs at level 2 without column tables (PYTHONOPTIMIZE and
    # PYTHONNODEBUGRANGES in fieldgate.service).
    run "$VENV/bin/python" -X no_debug_ranges -m compileall -q -j 0 -o 2 "$VENV/lib/python$(python_minor)/site-packages"
    # systemd-python from Debian (python3-systemd), linked alone into the venv: a whole
    # --system-site-packages would let Debian's other modules satisfy our requirements.
    if [[ -d $SYSTEMD_PY ]]; then
        run ln -sfn "$SYSTEMD_PY" "$VENV/lib/python$(python_minor)/site-packages/systemd"
    else
        note "warning: $SYSTEMD_PY missing; logging falls back to plain stderr lines"
    fi
}

activate() {
    if ! live_system; then
        note "skip udev and systemd activation: staging into $ROOT"
        return
    fi
    if command -v udevadm >/dev/null && [[ -d /run/udev ]]; then
        run udevadm control --reload-rules
        run udevadm trigger --subsystem-match=tty --action=add
    else
        note "udev not running: rules apply from next boot"
    fi
    run systemctl enable "$SERVICE"
    if [[ ! -d /run/systemd/system ]]; then
        note "systemd is not running here: the service starts at next boot"
        return
    fi
    run systemctl daemon-reload
    local missing=() cred
    [[ -f $CONF_DIR/site.yaml ]] || missing+=("$CONF_DIR/site.yaml (start from site.example.yaml)")
    for cred in "${CREDENTIALS[@]}"; do
        [[ -f $CRED_DIR/$cred ]] || missing+=("$CRED_DIR/$cred")
    done
    if ((${#missing[@]})); then
        note "not starting yet; provide:"
        printf '      %s\n' "${missing[@]}"
        note "then: systemctl restart $SERVICE"
    elif ((START)); then
        run systemctl restart "$SERVICE"
    fi
}

main() {
    parse_args "$@"
    preflight
    ((DRY_RUN)) && note "dry run: nothing is changed"
    install_packages
    create_user
    install_layout
    make_status_tls_pair
    install_venv
    activate
    note "done"
}

main "$@"
