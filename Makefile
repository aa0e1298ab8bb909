# Two commands for a fresh clone (Linux, Python 3.11):
#   make train   venv + pinned packages + genet_ops._C, then `python train.py` (embedded digits data)
#   make test    the same set-up, then the README's test command
# Both are idempotent: the venv is reused while requirements.txt is unchanged, the build
# while setup.py, csrc/, the packages and the build switches are. Each stamp's name holds a
# hash of what it depends on, so a change (or a git checkout) never leaves a stale one current.
# Variables: PYTHON (python3), VENV (.venv), MAX_JOBS (2), TRAIN_ARGS, PYTEST_ARGS (-q);
# the build switches GENET_OPS_CUDA, GENET_OPS_ASCEND, TORCH_CUDA_ARCH_LIST, SOC_VERSION
# are passed through to setup.py (README, "Set up, build, test").

PYTHON ?= python3
VENV ?= .venv
MAX_JOBS ?= 2
TRAIN_ARGS ?=
PYTEST_ARGS ?= -q

PY := $(VENV)/bin/python
DEPS_KEY := $(shell sha256sum requirements.txt | cut -c1-16)
BUILD_KEY := $(shell { echo "$(DEPS_KEY) $$GENET_OPS_CUDA $$GENET_OPS_ASCEND $$TORCH_CUDA_ARCH_LIST $$SOC_VERSION"; \
	find csrc setup.py -type f | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)
DEPS_STAMP := $(VENV)/.genet-deps-$(DEPS_KEY)
BUILD_STAMP := build/.genet-ext-$(BUILD_KEY)

# A stamp without the library it vouches for (deleted by hand) does not count.
ifeq ($(wildcard genet_ops/_C*.so),)
.PHONY: $(BUILD_STAMP)
endif

.PHONY: train test setup

train: $(BUILD_STAMP)
	$(PY) train.py $(TRAIN_ARGS)

test: $(BUILD_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS) tests

setup: $(BUILD_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	rm -f $(VENV)/.genet-deps-* && touch $@

# The build log goes to build.log; its "genet_ops setup:" lines say what was compiled.
$(BUILD_STAMP): $(DEPS_STAMP)
	@start=$$(date +%s); \
	if ! MAX_JOBS=$(MAX_JOBS) $(PY) setup.py build_ext --inplace > build.log 2>&1; then \
		tail -60 build.log; echo "make: the build failed (build.log)"; exit 1; \
	fi; \
	grep "genet_ops setup" build.log || true; \
	echo "make: build took $$(( $$(date +%s) - start )) s"
	@mkdir -p build && rm -f build/.genet-ext-* && touch $@
