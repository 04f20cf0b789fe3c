# One-command set-up on a fresh machine: `make demo` and `make test` bootstrap .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch goes in first and pinned: a bare `torch` requirement with no torch installed
# would pull a multi-GB CUDA build. 2.13.0 is the CPU wheel this workplace keeps on disk.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,tts,app,eval,dist,judges,vocoder
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: venv sysdeps test test-slow demo lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

# System packages used by the TTS backend (espeak-ng) and the browser tests (chromium).
# Best effort: only where apt-get is available and we are root; tests skip cleanly otherwise.
sysdeps:
	@bash scripts/sysdeps.sh

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP)
	$(BIN)/emosteer demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
