# The two commands of the README. Both install what they need first (scripts/setup).
.PHONY: setup kubo fabric browser c2patool demo test bench bench-setup lint

setup:
	./scripts/setup

# Kubo (the IPFS node) for the storage tests, built with Go into .cache/kubo/bin (reused).
kubo:
	./scripts/kubo.sh build

# Hyperledger Fabric (peer, orderer, configtxgen, osnadmin, cryptogen) and the chaincode, built
# with Go into .cache/fabric/bin (reused) for the Fabric ledger tests.
fabric:
	./scripts/fabric-network.sh build

# Debian's Chromium for the page's end-to-end test (Playwright drives it; no browser download).
# Not fatal here: without it the other tests still run, and the browser test says what is missing.
browser:
	./scripts/browser.sh install >/dev/null || echo "make: no Chromium; tests/test_browser.py will fail" >&2

# c2patool, a second reader of our Content Credentials, built with Rust from crates.io into
# .cache/c2patool/bin (reused). Not fatal, as for the browser.
c2patool:
	./scripts/c2patool.sh build || echo "make: no c2patool; tests/test_c2patool.py will fail" >&2

demo: setup
	.venv/bin/blockimage demo

test: setup kubo fabric browser c2patool
	.venv/bin/python -m pytest -q

# Benchmark extras: more photos (scikit-learn, matplotlib; Debian's opencv-doc if installed) and
# the baseline watermark, invisible-watermark, without its torch-pulling dependencies.
bench-setup: setup
	.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[bench]"
	.venv/bin/python -m pip install --quiet --no-deps -c constraints.txt invisible-watermark

bench: bench-setup kubo fabric
	.venv/bin/python benchmarks/register.py
	.venv/bin/python benchmarks/watermark.py
	.venv/bin/python benchmarks/verify_eval.py
	.venv/bin/python benchmarks/storage.py
	.venv/bin/python benchmarks/ledger.py
	.venv/bin/python benchmarks/analyze.py
	.venv/bin/python benchmarks/tamper_cv.py
	.venv/bin/python benchmarks/scale.py
	.venv/bin/python benchmarks/catchup.py

lint: setup
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
	.venv/bin/mypy
