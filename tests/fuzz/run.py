"""Coverage-guided fuzzing of one target with atheris (libFuzzer for Python).

Usage (from the repository root): ``scripts/fuzz TARGET [libFuzzer options]``, e.g.
``scripts/fuzz image -max_total_time=600``. The seeds (``targets.py``) are written to a
corpus folder first (a new one in ``$TMPDIR``, left for the next run to start from); a crash
is an exception the target does not allow, and libFuzzer saves the
input that caused it (``crash-*``) in the current folder.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris
from tests.fuzz.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: scripts/fuzz {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv[1]]
    corpus = Path(tempfile.mkdtemp(prefix=f"blockimage-fuzz-{sys.argv[1]}-"))
    for i, seed in enumerate(target.seeds()):
        (corpus / f"seed{i}").write_bytes(seed)

    def one_input(data: bytes) -> None:
        try:
            target.run(data)
        except target.allowed:
            pass

    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
