#!/usr/bin/env bash
# Build dist/fieldgate_<version>_<arch>.deb: a self-contained virtualenv for Debian/Raspberry Pi OS
# Bookworm (python3.11) on ARCH (arm64 or amd64), made on any Linux machine without emulation.
#
#   deploy/debian/build-deb.sh arm64            # or: make deb ARCH=arm64
#   DEB_REVISION=2 deploy/debian/build-deb.sh amd64
#
# How the venv is made for another architecture: pip downloads the wheels of the TARGET (manylinux
# aarch64 or x86_64, CPython 3.11, binary only) into a wheelhouse and installs them with --target into
# the venv's site-packages, which needs no interpreter of the target. The rest of a venv is a skeleton
# written here: pyvenv.cfg (home = /usr/bin) and bin/python3 -> /usr/bin/python3.11, Bookworm's
# interpreter, so the venv is complete once on the box, where nothing is compiled or downloaded.
# The wheelhouse stays in build/deb/ARCH/wheelhouse for `install.sh --offline` on such a box.
#
# Environment: PYTHON (a python3 with pip, default python3), DEB_REVISION (default 1), OUT (default
# dist), WORK (default build/deb/ARCH), DEB_COMPRESS and DEB_COMPRESS_LEVEL (default xz, 6: the release
# build; the tests use gzip 1, 11 s instead of 6 min for the ~370 MB tree; lintian knows no other).
set -euo pipefail

ARCH=${1:?usage: build-deb.sh arm64|amd64}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
DEB_REVISION=${DEB_REVISION:-1}
OUT=${OUT:-$REPO/dist}
WORK=${WORK:-$REPO/build/deb/$ARCH}
DEB_COMPRESS=${DEB_COMPRESS:-xz}
DEB_COMPRESS_LEVEL=${DEB_COMPRESS_LEVEL:-6}
PY=3.11
GLIBC_MINOR=36 # Bookworm's glibc 2.36: the newest manylinux tag the box can load
PREFIX=opt/fieldgate
VENV=$PREFIX/venv
SITE_PACKAGES=$VENV/lib/python$PY/site-packages

case $ARCH in
arm64) MACHINE=aarch64 ;;
amd64) MACHINE=x86_64 ;;
*)
    echo "build-deb.sh: ARCH must be arm64 or amd64, got '$ARCH'" >&2
    exit 2
    ;;
esac

note() { echo "==> $*"; }

upstream_version() {
    "$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
        "$REPO/pyproject.toml"
}

# pip takes each --platform literally: list every manylinux tag glibc 2.36 can load.
platform_args() {
    local minor
    for ((minor = GLIBC_MINOR; minor >= 17; minor--)); do
        printf -- '--platform\nmanylinux_2_%s_%s\n' "$minor" "$MACHINE"
    done
    printf -- '--platform\nmanylinux2014_%s\n' "$MACHINE"
}

build_wheelhouse() {
    local src=$WORK/src wheelhouse=$WORK/wheelhouse platforms
    note "fieldgate's wheel from the sources"
    # Wheels already downloaded are kept (pip download skips them); fieldgate's own is always rebuilt.
    rm -rf "$src" "$wheelhouse"/fieldgate-*.whl
    mkdir -p "$src" "$wheelhouse"
    # A copy, so pip's build/ and egg-info never land in the clone.
    cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/gateway" "$REPO/drivers" "$REPO/sim" "$REPO/centre" "$src/"
    find "$src" -name __pycache__ -type d -prune -exec rm -rf {} +
    "$PYTHON" -m pip wheel -q --no-deps -w "$wheelhouse" "$src"
    note "wheels of every dependency for $MACHINE, CPython $PY"
    mapfile -t platforms < <(platform_args)
    "$PYTHON" -m pip download -q --dest "$wheelhouse" --find-links "$wheelhouse" --only-binary=:all: \
        "${platforms[@]}" --python-version "$PY" --implementation cp --abi "cp${PY/./}" \
        "fieldgate[vision]==$VERSION"
}

stage_venv() {
    local platforms
    note "virtualenv /$VENV from the wheelhouse"
    mapfile -t platforms < <(platform_args)
    "$PYTHON" -m pip install -q --no-index --find-links "$WORK/wheelhouse" --only-binary=:all: \
        "${platforms[@]}" --python-version "$PY" --implementation cp --abi "cp${PY/./}" \
        --no-compile --no-warn-conflicts --root-user-action=ignore --target "$STAGE/$SITE_PACKAGES" "fieldgate[vision]==$VERSION"
    # Scripts pip wrote name the build machine's python; ours follow.
    rm -rf "${STAGE:?}/$SITE_PACKAGES/bin"
    find "$STAGE/$SITE_PACKAGES" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
    mkdir -p "$STAGE/$VENV/bin"
    ln -s /usr/bin/python$PY "$STAGE/$VENV/bin/python$PY"
    ln -s python$PY "$STAGE/$VENV/bin/python3"
    ln -s python$PY "$STAGE/$VENV/bin/python"
    ln -s lib "$STAGE/$VENV/lib64"
    printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = %s\n' "$PY" \
        >"$STAGE/$VENV/pyvenv.cfg"
    printf '#!/%s/bin/python3\nimport sys\n\nfrom gateway.cli import main\n\nsys.exit(main())\n' "$VENV" \
        >"$STAGE/$VENV/bin/fieldgate"
    chmod 0755 "$STAGE/$VENV/bin/fieldgate"
    # What is inside, for whoever audits a box: one "name==version" a line.
    find "$STAGE/$SITE_PACKAGES" -maxdepth 1 -name '*.dist-info' -printf '%f\n' |
        sed -E 's/^(.+)-([^-]+)\.dist-info$/\1==\2/' | sort >"$STAGE/$PREFIX/wheels.txt"
}

stage_files() {
    note "unit, udev rules, example sites, models, device templates, docs"
    local doc=$STAGE/usr/share/doc/fieldgate
    install -D -m 0644 "$REPO/deploy/raspberrypi/fieldgate.service" "$STAGE/lib/systemd/system/fieldgate.service"
    install -D -m 0644 "$REPO/deploy/raspberrypi/99-fieldgate-rs485.rules" \
        "$STAGE/lib/udev/rules.d/99-fieldgate-rs485.rules"
    # The demo site with the state where the unit lets it write: a conffile, copied to site.yaml by hand.
    install -d -m 0755 "$STAGE/etc/fieldgate"
    sed 's#^  state_dir: ./demo-state$#  state_dir: /var/lib/fieldgate#' "$REPO/config/demo.yaml" \
        >"$STAGE/etc/fieldgate/site.example.yaml"
    grep -q '^  state_dir: /var/lib/fieldgate$' "$STAGE/etc/fieldgate/site.example.yaml"
    install -d -m 0755 "$doc/examples" "$STAGE/$PREFIX/models" "$STAGE/$PREFIX/config/devices"
    install -m 0644 "$REPO"/config/*.yaml "$doc/examples/"
    install -m 0644 "$REPO"/models/*.onnx "$REPO"/models/*.yaml "$REPO/models/README.md" "$STAGE/$PREFIX/models/"
    install -m 0644 "$REPO"/config/devices/*.yaml "$STAGE/$PREFIX/config/devices/"
    install -m 0644 "$REPO/deploy/raspberrypi/README.md" "$STAGE/$PREFIX/README.md"
    install -m 0644 "$REPO/deploy/raspberrypi/README.md" "$doc/README.md"
    install -m 0644 "$HERE/copyright" "$doc/copyright"
    sed "s/@VERSION@/$DEB_VERSION/; s/@DATE@/$(date -R -d "@${SOURCE_DATE_EPOCH}")/" "$HERE/changelog.in" |
        gzip -9n >"$doc/changelog.Debian.gz"
    install -D -m 0644 "$HERE/lintian-overrides" "$STAGE/usr/share/lintian/overrides/fieldgate"
    install -D -m 0644 "$HERE/fieldgate.1" "$STAGE/usr/share/man/man1/fieldgate.1"
    gzip -9n "$STAGE/usr/share/man/man1/fieldgate.1"
    mkdir -p "$STAGE/usr/bin"
    ln -s "/$VENV/bin/fieldgate" "$STAGE/usr/bin/fieldgate"
}

stage_control() {
    note "control files"
    local size
    install -d -m 0755 "$STAGE/DEBIAN"
    size=$(du -sk --apparent-size --exclude=DEBIAN "$STAGE" | cut -f1)
    sed "s/@VERSION@/$DEB_VERSION/; s/@ARCH@/$ARCH/; s/@SIZE@/$size/" "$HERE/control.in" >"$STAGE/DEBIAN/control"
    install -m 0755 "$HERE/postinst" "$HERE/prerm" "$HERE/postrm" "$STAGE/DEBIAN/"
    echo /etc/fieldgate/site.example.yaml >"$STAGE/DEBIAN/conffiles"
    chmod 0644 "$STAGE/DEBIAN/conffiles"
    (cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
        xargs -0 md5sum >DEBIAN/md5sums)
    chmod 0644 "$STAGE/DEBIAN/md5sums"
}

main() {
    VERSION=$(upstream_version)
    DEB_VERSION=$VERSION-$DEB_REVISION
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}
    export SOURCE_DATE_EPOCH
    STAGE=$WORK/root
    note "fieldgate $DEB_VERSION for $ARCH ($MACHINE)"
    mkdir -p "$WORK" "$OUT"
    build_wheelhouse
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
    stage_venv
    stage_files
    # Directories 0755, files 0644 (the wheels' shared objects and scripts are loaded or imported, never
    # run), the one program 0755: whatever the umask or the wheels said.
    find "$STAGE" -type d -exec chmod 0755 {} +
    find "$STAGE" -type f -exec chmod 0644 {} +
    chmod 0755 "$STAGE/$VENV/bin/fieldgate"
    stage_control
    local deb=$OUT/fieldgate_${DEB_VERSION}_$ARCH.deb
    dpkg-deb --root-owner-group -Z"$DEB_COMPRESS" -z"$DEB_COMPRESS_LEVEL" --build "$STAGE" "$deb" >/dev/null
    note "built $deb ($(du -h "$deb" | cut -f1))"
}

main "$@"
