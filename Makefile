# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
FUZZ_STAMP = $(VENV)/.fuzz-installed

.PHONY: demo test lint typecheck check wheelhouse clean fuzz fuzz-smoke deb arm64-check soak

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,vision]'
	@# systemd-python needs libsystemd-dev and pkg-config to build; without it the daemon speaks the
	@# notify protocol itself and logs to stderr, and only the journald-library tests are skipped.
	$(PY) -m pip install -q 'systemd-python>=235' || echo "note: systemd-python not built (apt-get install libsystemd-dev pkg-config)"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m sim.demo

$(FUZZ_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install -q -e '.[dev,vision,fuzz]'
	touch $(FUZZ_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway drivers sim centre tests bench models fuzz

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The whole suite: lint, types, unit tests, the virtual-rig HIL tests and a short fuzz run.
# pytest exits 5 when it collected nothing; that is a failure here, never green.
test: $(STAMP)
	$(VENV)/bin/ruff check gateway drivers sim centre tests bench models fuzz
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)
	$(MAKE) --no-print-directory fuzz-smoke

# Every parser harness in fuzz/targets/ to 1 000 000 executions each (atheris where it installs, else the
# seeded mutator), with line coverage; the table it prints goes to bench/RESULTS.md. Findings: fuzz/README.md.
FUZZ_RUNS ?= 1000000
fuzz: $(FUZZ_STAMP)
	$(PY) -m fuzz.run --runs $(FUZZ_RUNS) --coverage $(FUZZ_ARGS)

# The short budget `make test` runs: the seeded mutator (deterministic: a finding reproduces), every
# target capped at 50 000 inputs or 10 s, two at a time; under a minute on a 2-core machine.
fuzz-smoke: $(STAMP)
	$(PY) -m fuzz.run --engine mutator --runs 50000 --seconds 10 --jobs 2 --timeout 30 $(FUZZ_ARGS)

wheelhouse: $(STAMP)
	$(PY) -m pip wheel -q -w wheelhouse '.[vision]'

# dist/fieldgate_<version>-<revision>_<arch>.deb for Debian / Raspberry Pi OS Bookworm: a self-contained
# virtualenv in /opt/fieldgate built from a wheelhouse of the target architecture (deploy/debian/build-deb.sh).
ARCH ?= $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_REVISION ?= 1
DEB_VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)-$(DEB_REVISION)
deb:
	PYTHON=$(PYTHON) DEB_REVISION=$(DEB_REVISION) deploy/debian/build-deb.sh $(ARCH)

# The arm64 package installed offline in an emulated Bookworm arm64 root and run there (slow: on demand
# and before a release; deploy/raspberrypi/README.md). Needs root, debootstrap and qemu-user-static.
arm64-check:
	$(MAKE) --no-print-directory deb ARCH=arm64
	deploy/debian/check-in-root.sh arm64 dist/fieldgate_$(DEB_VERSION)_arm64.deb

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .fuzz

# The chaos soak (bench/soak.py): the real daemon on the virtual rig for SOAK_S seconds with faults on a
# schedule; prints its report (the CI runs a short one in tests/hil/test_soak.py).
SOAK_S ?= 3600
soak: $(STAMP)
	$(PY) bench/soak.py --duration $(SOAK_S) $(SOAK_ARGS)
