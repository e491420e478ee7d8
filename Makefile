# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test lint typecheck check wheelhouse clean

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
	$(PY) -m gateway.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway drivers sim tests bench models

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The whole suite: lint, types, unit tests and the virtual-rig HIL tests.
# pytest exits 5 when it collected nothing; that is a failure here, never green.
test: $(STAMP)
	$(VENV)/bin/ruff check gateway drivers sim tests bench models
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

wheelhouse: $(STAMP)
	$(PY) -m pip wheel -q -w wheelhouse '.[vision]'

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
