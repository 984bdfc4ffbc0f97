"""Every parser of outside bytes either succeeds or raises its own BlockImageError: property
tests (hypothesis) over random and mutated real inputs, and a bounded coverage-guided run
(atheris) of each target. ``scripts/fuzz`` runs the latter for as long as you like."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import ROOT
from tests.fuzz.targets import TARGETS

EXAMPLES = 400  # per target, beside the atheris runs below
ATHERIS_RUNS = 10_000


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A real input with a few bytes flipped, inserted or removed, or cut short."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_random_and_mutated_inputs_raise_only_their_own_errors(name):
    target = TARGETS[name]
    seeds = target.seeds()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.one_of(st.binary(max_size=4096), mutated(seeds)))
    def check(data: bytes) -> None:
        try:
            target.run(data)
        except target.allowed:
            pass

    for seed in seeds:  # the seeds themselves are valid
        target.run(seed)
    check()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_coverage_guided_run_finds_no_crash(name, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", name, f"-runs={ATHERIS_RUNS}",
         "-max_len=65536", "-seed=1", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its corpus folder goes with the test's
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Done {ATHERIS_RUNS} runs" in done.stderr
