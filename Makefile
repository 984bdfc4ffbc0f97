# The two commands of the README. Both install what they need first (scripts/setup).
.PHONY: setup demo test bench lint

setup:
	./scripts/setup

demo: setup
	.venv/bin/blockimage demo

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/register.py

lint:
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
