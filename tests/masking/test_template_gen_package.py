"""The template generator as a package (``sftdata.testing.template_gen``, issue 19): every public
name of the former single module still imports from the package path, and the flag table, the spec
and the strategy agree on which flag combinations exist."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sftdata.testing.template_gen as tg
from sftdata.testing.template_gen import TemplateSpec, spec_fields, template_specs
from sftdata.testing.template_gen.flags import FIELD_VALUES, incompatible

#: the public names of sftdata/testing/template_gen.py before the split (its __all__ and the other
#: public module-level names)
FORMER_PUBLIC = ("BEHAVIOURS", "Behaviour", "ExpectedTurn", "SpecReport", "TemplateSpec", "check_against_spec",
                 "spec_conversations", "spec_tokenizer", "template_specs", "THINK_OPEN", "CLOCK_FORMAT", "EXPLICIT_ENDS",
                 "prompt_text", "spec_fields")


@pytest.mark.parametrize("name", FORMER_PUBLIC)
def test_every_former_public_name_imports_from_the_package(name):
    assert hasattr(tg, name)
    assert name in tg.__all__


def test_the_flag_table_holds_every_field_of_the_spec():
    assert sorted(FIELD_VALUES) == sorted(spec_fields())


@given(st.fixed_dictionaries({k: st.sampled_from(v) for k, v in FIELD_VALUES.items()}))
def test_a_spec_is_built_exactly_when_its_flags_go_together(values):
    problems = incompatible(values)
    if problems:
        with pytest.raises(ValueError, match="incompatible TemplateSpec"):
            TemplateSpec(**values)
    else:
        spec = TemplateSpec(**values)
        assert {k: getattr(spec, k) for k in FIELD_VALUES} == values


@given(template_specs())
def test_every_drawn_spec_has_compatible_flags(spec):
    assert incompatible({k: getattr(spec, k) for k in FIELD_VALUES}) == []
