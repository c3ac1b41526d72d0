"""The flat module paths from before the stage folders (``sftdata.render`` ...) keep working: the same
module object as the new path (so patching through either patches both), with a DeprecationWarning
naming the new path; the documented paths (``sftdata.collate.PaddingFreeCollator``,
``sftdata.output.load_output``, ``sftdata.merge``) stay as they were, without a warning."""

from __future__ import annotations

import json
import subprocess
import sys

from sftdata._moved import MOVED

_PROBE = r"""
import importlib, json, warnings
from sftdata._moved import MOVED
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


def _probe(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_old_path_is_the_new_module_with_a_warning():
    report = _probe(_PROBE)
    assert set(report) == set(MOVED) and len(MOVED) >= 20
    for old, new in MOVED.items():
        r = report[old]
        assert r["same"] and r["name"] == new and r["spec"] == new, (old, r)
        assert [w[:2] for w in r["warnings"]] == [
            ["DeprecationWarning", f"Moved module: {old} is now {new}; import it from there (the old path "
                                   "will be removed)"]], (old, r)
        assert r["warnings"][0][2] == "<string>", r  # attributed to the importing code, not importlib


def test_old_forms_of_import_and_patching_reach_the_moved_module():
    code = r"""
import json, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import sftdata
from sftdata import render as r1
from sftdata.segments import SegmentEncoder
import sftdata.masking.render as r2, sftdata.masking.segments as s2
import sftdata.encode
from unittest import mock
import sftdata.masking.encode as e2
with mock.patch("sftdata.encode.check_turn_paths", "patched"):
    patched = e2.check_turn_paths
import sftdata.merge
from sftdata.collate import PaddingFreeCollator
from sftdata.collate.collators import PaddingFreeCollator as P2
from sftdata.output import load_output
from sftdata.output.load import load_output as l2
print(json.dumps({"render": r1 is r2 and sftdata.render is r2, "segments": SegmentEncoder is s2.SegmentEncoder,
                  "patched": patched == "patched", "merge_function": callable(sftdata.merge)
                  and not isinstance(sftdata.merge, type(sftdata)),
                  "collate": PaddingFreeCollator is P2, "load": load_output is l2}))
"""
    report = _probe(code)
    assert report == {"render": True, "segments": True, "patched": True, "merge_function": True,
                      "collate": True, "load": True}


def test_the_new_and_documented_paths_warn_nothing():
    code = r"""
import importlib, json, warnings
from sftdata._moved import MOVED
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import sftdata
    for new in MOVED.values():
        importlib.import_module(new)
    from sftdata.collate import PaddingCollator, PaddingFreeCollator
    from sftdata.output import load_output
    from sftdata import merge, prepare, TurnPolicy
print(json.dumps([str(w.message) for w in caught if "Moved module" in str(w.message)]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_an_unknown_name_is_still_an_attribute_error():
    import sftdata

    try:
        sftdata.no_such_module  # noqa: B018
    except AttributeError as e:
        assert "no_such_module" in str(e)
    else:
        raise AssertionError("sftdata.no_such_module resolved")
