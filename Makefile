# Every target creates and uses .venv; `make run` and `make test` are all the set-up a fresh machine needs.
# `make run` installs only what running needs (linechat and uvloop); the targets for
# developers (test, lint, docs, bench, fuzz, dist) add the development tools once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
FUZZ_STAMP := $(VENV)/.installed-fuzz
FUZZ_SECONDS ?= 300

.PHONY: run test lint docs docs-serve bench bench-tools fuzz dist ci clean compiled test-compiled

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[fast]'
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/pip install -q -e '.[fast,dev]'
	touch $(DEV_STAMP)

$(FUZZ_STAMP): $(DEV_STAMP)
	$(BIN)/pip install -q -e '.[fuzz]'
	touch $(FUZZ_STAMP)

run: $(RUN_STAMP)
	$(BIN)/linechat serve

test: $(DEV_STAMP)
	$(BIN)/pytest -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench examples docs/hooks noxfile.py .ci hatch_build.py
	$(BIN)/ruff format --check src tests bench examples docs/hooks noxfile.py .ci hatch_build.py
	$(BIN)/mypy

# The site, built strictly: a warning, a broken link or a missing reference fails.
docs: $(DEV_STAMP)
	$(BIN)/mkdocs build --strict

docs-serve: $(DEV_STAMP)
	$(BIN)/mkdocs serve

bench: $(DEV_STAMP) bench-tools
	$(BIN)/python bench/framing.py
	$(BIN)/python bench/echo/run.py
	$(BIN)/python bench/client.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/chat/run.py
	$(BIN)/python bench/smtp.py

# The C load generators and the echo reference server (bench/bin/ is gitignored).
bench-tools: bench/bin/loadgen bench/bin/cecho bench/bin/chat-loadgen

# The load generators share bench/loadgen_common.h.
bench/bin/loadgen: bench/loadgen_common.h

bench/bin/%: bench/echo/%.c
	@mkdir -p bench/bin
	gcc -O2 -Wall -Wextra -o $@ $<

bench/bin/chat-loadgen: bench/chat/loadgen.c bench/loadgen_common.h
	@mkdir -p bench/bin
	gcc -O2 -Wall -Wextra -o $@ $<

# Every tests/fuzz/fuzz_*.py for FUZZ_SECONDS each (CI runs them for 25 s each).
fuzz: $(FUZZ_STAMP)
	$(BIN)/python tests/fuzz/run.py --seconds $(FUZZ_SECONDS)

# sdist and wheel in dist/, then the wheel's contents checked.
dist: $(DEV_STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python .ci/check_wheel.py dist/*.whl

# The optional mypyc-compiled build (hatch_build.py). `make compiled`: a complete
# linechat with its hot modules compiled, in build/compiled, for
# PYTHONPATH=build/compiled (the echo benchmark's --compiled builds the same);
# `make test-compiled`: the suite on the compiled wheel, as CI runs it.
compiled: $(DEV_STAMP)
	$(BIN)/python hatch_build.py --out build/compiled

test-compiled: $(DEV_STAMP)
	$(BIN)/nox -s tests_compiled

ci:
	.ci/run

clean:
	rm -rf $(VENV) build dist site .nox .pytest_cache .mypy_cache .ruff_cache
