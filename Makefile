# The front door: `make eval ...` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

POLICY   ?= scripted
TASK     ?= drawer_tidy
EPISODES ?= 10
SEED     ?= 0
WORKERS  ?= 1
OUT      ?=
VIDEOS   ?= 0

POLICIES ?= all
TASKS    ?= all

.PHONY: venv openpi-client eval compare regress test test-browser test-slow bench clean

venv: $(STAMP)

# torch is installed first and pinned, so no later dependency can pull a CUDA build.
# robosuite comes without its declared requirements (see the [robosuite] extra in pyproject.toml).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,ray,robosuite]' torch==2.13.0
	$(PY) -m pip install -q --no-deps robosuite==1.5.2
	touch $(STAMP)

# openpi's own client (pins numpy<2) in a venv of its own, for the interop test.
OPENPI_VENV  := .venv-openpi
OPENPI_STAMP := $(OPENPI_VENV)/.installed

openpi-client: $(OPENPI_STAMP)

$(OPENPI_STAMP):
	$(PYTHON) -m venv $(OPENPI_VENV)
	$(OPENPI_VENV)/bin/pip install -q openpi-client==0.1.2 typing_extensions
	touch $(OPENPI_STAMP)

eval: $(STAMP)
	$(VENV)/bin/pi0bench eval --policy $(POLICY) --task $(TASK) --episodes $(EPISODES) \
		--seed $(SEED) --workers $(WORKERS) --videos $(VIDEOS) $(if $(OUT),--out $(OUT))

compare: $(STAMP)
	$(VENV)/bin/pi0bench compare --policies $(POLICIES) --tasks $(TASKS) --episodes $(EPISODES) \
		--seed $(SEED) --workers $(WORKERS) --videos $(VIDEOS) $(if $(OUT),--out $(OUT))

# Sim-score regression against results/reference/ci.json (exit 1 on a significant drop).
regress: $(STAMP)
	MUJOCO_GL=egl $(VENV)/bin/pi0bench regress --workers 2

# One pytest worker per core (pytest-xdist), each test file kept on one worker so its module
# fixtures are built once; every test runs torch on one thread (tests/conftest.py).
TEST_WORKERS ?= auto

test: $(STAMP) $(OPENPI_STAMP)
	MUJOCO_GL=egl $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

# The comparison page in headless Chromium, installed from the system's packages if missing.
test-browser: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	MUJOCO_GL=egl $(PY) -m pytest -m browser tests/test_browser.py

test-slow: $(STAMP)
	MUJOCO_GL=egl $(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) benchmarks/harness_overhead.py
	$(PY) benchmarks/task_speed.py --task towel_fold
	$(PY) benchmarks/task_speed.py --task paper_towel_replace

clean:
	rm -rf $(VENV) $(OPENPI_VENV)
