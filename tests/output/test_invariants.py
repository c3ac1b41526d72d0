"""Production invariants raise InvariantError (they are not ``assert``s, which ``python -O``
removes): stats row accounting, the packing report's balances, the prepare worker pool."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sftdata.errors import SftDataError
from sftdata.invariants import InvariantError
from sftdata.packing.report import PackReport
from sftdata.output.stats import StatsPart, build_stats, check_row_accounting


def _build(part: StatsPart) -> dict:
    return build_stats(part=part, fingerprint="0" * 64, tokenizer_info={}, options={}, seconds=1.0)


def test_row_accounting():
    ok = StatsPart(rows_in=3, rows_out=2, rows_rejected=1)
    check_row_accounting(ok)
    assert _build(ok)["rows_in"] == 3
    with pytest.raises(InvariantError, match=r"rows_in == rows_out \+ rows_rejected \(3 in, 2 out, 0 rejected\)") as e:
        _build(StatsPart(rows_in=3, rows_out=2))
    assert isinstance(e.value, SftDataError) and isinstance(e.value, RuntimeError)


def test_pack_report_balances():
    ok = PackReport("bfd", 8, 0, "truncate", rows_in=2, sequences_out=2, tokens_in=10, tokens_out=8, tokens_truncated=2, trained_tokens_in=4,
                    trained_tokens_out=3, trained_tokens_truncated=1, bins=1)
    ok.check()
    cases = {
        "tokens_in \\+ tokens_repeated": dict(tokens_out=7),
        "trained_tokens_in ==": dict(trained_tokens_out=2),
        "rows_in \\+ sequences_from_splits": dict(sequences_out=1),
        "bins >= lower_bound_l2": dict(lower_bound=2, lower_bound_l2=2),
    }
    for invariant, change in cases.items():
        bad = PackReport(**{**ok.__dict__, **change})
        with pytest.raises(InvariantError, match=invariant):
            bad.check()


def test_worker_without_its_function():
    from sftdata import runner

    with pytest.raises(InvariantError, match="_init_worker"):
        runner._work([])


def test_invariants_hold_under_python_O():
    code = ("from sftdata.output.stats import StatsPart, check_row_accounting\n"
            "from sftdata.invariants import InvariantError\n"
            "try:\n    check_row_accounting(StatsPart(rows_in=1))\nexcept InvariantError:\n    print('raised')\n")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "raised", out.stderr
