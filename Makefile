# Every target creates and uses .venv; `make run` and `make test` are all the set-up a fresh machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-tools clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[fast,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/linechat serve

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

bench: $(STAMP) bench-tools
	$(BIN)/python bench/framing.py
	$(BIN)/python bench/echo/run.py
	$(BIN)/python bench/client.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/chat/run.py
	$(BIN)/python bench/smtp.py

# The C load generators and the echo reference server (bench/bin/ is gitignored).
bench-tools: bench/bin/loadgen bench/bin/cecho bench/bin/chat-loadgen

bench/bin/%: bench/echo/%.c
	@mkdir -p bench/bin
	gcc -O2 -Wall -Wextra -o $@ $<

bench/bin/chat-loadgen: bench/chat/loadgen.c
	@mkdir -p bench/bin
	gcc -O2 -Wall -Wextra -o $@ $<

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
