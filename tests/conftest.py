"""Test-wide settings: one torch thread (tiny models on a shared 2-core machine run far
faster single-threaded; tests that need more set it themselves); trackio (which reads
TRACKIO_DIR once, at import) stores its runs in a temporary dir, never in ~/.cache.

Hypothesis profiles (``SFTDATA_HYPOTHESIS_PROFILE``):

* ``default``: random examples, a fresh seed each run; what developers run, so that every
  run explores new inputs (reproduce a failure with the ``@reproduce_failure`` blob printed).
* ``ci``: ``derandomize=True`` (the same examples on every run, as Hypothesis recommends for
  CI) so that a landing is never decided by the draw, and no per-example deadline or
  too-slow health check (a slower CI machine must not fail a test by timing alone;
  performance is measured in ``bench/``); ``.ci/run`` sets it.
"""

import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, settings

os.environ["TRACKIO_DIR"] = tempfile.mkdtemp(prefix="sftdata-tests-trackio-")

settings.register_profile(
    "ci", derandomize=True, print_blob=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("SFTDATA_HYPOTHESIS_PROFILE", "default"))

torch.set_num_threads(1)


# -- moved module paths (tests/test_moved_paths.py, tests/train/test_train_moved_paths.py) -----------

_MOVED_PROBE = r"""
import importlib, json, sys, warnings
MOVED = importlib.import_module(sys.argv[1]).MOVED
report = {}
for old, new in MOVED.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = importlib.import_module(old)
    b = importlib.import_module(new)
    report[old] = {"same": a is b, "name": a.__name__, "spec": a.__spec__.name,
                   "warnings": [(w.category.__name__, str(w.message), w.filename) for w in caught]}
print(json.dumps(report))
"""


def _python_probe(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def python_probe():
    """Run ``code`` (with ``args``) in a fresh interpreter; its last stdout line, parsed as JSON."""
    return _python_probe


@pytest.fixture
def assert_moved_paths():
    """Check, in a fresh interpreter, every old path of the ``MOVED`` table in module ``table``: it
    imports as the module at its new path (the same object), with exactly one DeprecationWarning
    naming the new path, attributed to the importing code (not importlib)."""

    def check(table: str, moved: dict) -> None:
        report = _python_probe(_MOVED_PROBE, table)
        assert set(report) == set(moved) and len(moved) >= 20
        for old, new in moved.items():
            r = report[old]
            assert r["same"] and r["name"] == new and r["spec"] == new, (old, r)
            assert [w[:2] for w in r["warnings"]] == [
                ["DeprecationWarning", f"Moved module: {old} is now {new}; import it from there (the old path "
                                       "will be removed)"]], (old, r)
            assert r["warnings"][0][2] == "<string>", r  # attributed to the importing code, not importlib

    return check
