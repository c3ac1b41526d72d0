"""The flat module paths from before the stage folders (``sftdata.render`` ...) keep working: the same
module object as the new path (so patching through either patches both), with a DeprecationWarning
naming the new path; the documented paths (``sftdata.collate.PaddingFreeCollator``,
``sftdata.output.load_output``, ``sftdata.merge``) stay as they were, without a warning."""

from __future__ import annotations

from sftdata._moved import MOVED


def test_every_old_path_is_the_new_module_with_a_warning(assert_moved_paths):
    assert_moved_paths("sftdata._moved", MOVED)


def test_old_forms_of_import_and_patching_reach_the_moved_module(python_probe):
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
    report = python_probe(code)
    assert report == {"render": True, "segments": True, "patched": True, "merge_function": True,
                      "collate": True, "load": True}


def test_the_new_and_documented_paths_warn_nothing(python_probe):
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
    assert python_probe(code) == []


def test_an_unknown_name_is_still_an_attribute_error():
    import sftdata

    try:
        sftdata.no_such_module  # noqa: B018
    except AttributeError as e:
        assert "no_such_module" in str(e)
    else:
        raise AssertionError("sftdata.no_such_module resolved")
