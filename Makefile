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

# Every table in benchmarks/, each also saved as $(BENCH_OUT)/NAME.md under the machine it ran on
# (CPU, torch's CPU capability, whether bf16 is native: emosteer.precision.machine_line).
BENCH_OUT ?= out/bench
bench: $(STAMP)
	mkdir -p $(BENCH_OUT)
	for b in benchmarks/[!_]*.py; do n=$$(basename $$b .py); echo "== $$b"; \
	  { echo "# $$b, $$(date -u +%Y-%m-%dT%H:%MZ)"; \
	    $(BIN)/python -c 'from emosteer.precision import machine_line; print(machine_line())'; \
	    $(BIN)/python $$b; echo $$? > $(BENCH_OUT)/.rc; } | tee $(BENCH_OUT)/$$n.md; \
	  test "$$(cat $(BENCH_OUT)/.rc)" = 0 || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
