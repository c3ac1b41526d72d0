"""The command lines print sftdata's own warnings as one line, others as Python does."""

from __future__ import annotations

import warnings
from pathlib import Path

import sftdata_train
from sftdata.cli_warnings import is_own_warning, warnings_as_lines
from sftdata.formats.reader import ArrowArgumentsWarning

TRAIN_FILE = str(Path(sftdata_train.__file__).with_name("data.py"))


def test_own_warnings_are_told_apart_by_category_or_file():
    assert is_own_warning(ArrowArgumentsWarning, "/elsewhere/x.py")
    assert is_own_warning(UserWarning, TRAIN_FILE)
    assert not is_own_warning(UserWarning, warnings.__file__)
    assert not is_own_warning(FutureWarning, "/site-packages/transformers/modeling_utils.py")


def test_warnings_as_lines_formats_own_warnings_and_restores_the_hook(capsys):
    passed_on = []
    with warnings.catch_warnings():  # restores the hook that pytest set, whatever happens below
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, *a, **k: passed_on.append((str(message), category))
        hook = warnings.showwarning
        with warnings_as_lines("sftdata-train"):
            warnings.warn_explicit("rows are longer than the budget", UserWarning, TRAIN_FILE, 150)
            warnings.warn_explicit("deprecated thing", FutureWarning, "/site-packages/lib/mod.py", 7)
        assert warnings.showwarning is hook
    assert capsys.readouterr().err.splitlines() == ["sftdata-train: warning: rows are longer than the budget"]
    assert passed_on == [("deprecated thing", FutureWarning)]  # another library's warning: the previous hook
