"""Generated chat templates whose ground truth is known (issue 15).

A :class:`TemplateSpec` is a set of behaviours real chat templates have (separators before
headers, reasoning openers in the generation prompt, constant suffixes, stop tokens before or
after a newline or written by the next message, history rewriting, tool-call syntaxes, clock
reads, reasoning field names). :meth:`TemplateSpec.source` writes a Jinja chat template with
those behaviours (transformers' conventions: ``messages``, ``tools``,
``add_generation_prompt``, ``strftime_now``), and :meth:`TemplateSpec.expected` says, from the
behaviour flags alone (never by rendering the template), what the model generates at each
assistant turn ``k``: the characters after the generation prompt, up to and including the stop
token, or the reason sftdata must reject the row when the generated text is not determined
(``turn_split``: the message is split in two blocks; ``turn_not_isolated``: the message is
merged into the block of the message before it).

:func:`template_specs` is a hypothesis strategy of specs (optionally forcing one behaviour of
:data:`BEHAVIOURS` on, and others off); :func:`spec_conversations` draws conversations that
exercise a spec; :func:`spec_tokenizer` builds an offline tokenizer holding the spec's control
tokens (one BPE per process, one wrapper per control-token set); :func:`check_against_spec`
is the oracle: it rebuilds every root-to-leaf path of sftdata's rows from ``parent`` alone and
compares every trained run with ``tokens(P_k)`` (``P_k`` from transformers'
``apply_chat_template(m[:k], add_generation_prompt=True)``) followed by
``tokens(expected text)``.

Example::

    from hypothesis import given, strategies as st
    from sftdata import Encoder, RowError
    from sftdata.testing.template_gen import template_specs, spec_conversations, spec_tokenizer, check_against_spec

    @given(st.data())
    def test(data):
        spec = data.draw(template_specs())
        conv = data.draw(spec_conversations(spec))
        tok = spec_tokenizer(spec)
        enc = Encoder(tok, stop_tokens=spec.stop_tokens())
        try:
            out = enc.encode(conv)
        except RowError as e:
            out = e
        check_against_spec(tok, spec, conv, out, now=enc.now)

The package holds one concept per module: :mod:`.vocab` (headers, tokens, markers),
:mod:`.flags` (each flag's values and which combine), :mod:`.spec` (:class:`TemplateSpec`),
:mod:`.writer` (the Jinja source), :mod:`.ground_truth` (the expected turns),
:mod:`.behaviours` (:data:`BEHAVIOURS`), :mod:`.strategies` (hypothesis strategies),
:mod:`.tokenizer` (offline tokenizers) and :mod:`.check` (the oracle). Every public name is
importable from ``sftdata.testing.template_gen``.
"""

from __future__ import annotations

from .behaviours import BEHAVIOURS, Behaviour
from .check import SpecReport, check_against_spec, prompt_text
from .ground_truth import ExpectedTurn
from .spec import TemplateSpec, spec_fields
from .strategies import spec_conversations, template_specs
from .tokenizer import spec_tokenizer
from .vocab import CLOCK_FORMAT, EXPLICIT_ENDS, THINK_OPEN

__all__ = [
    "BEHAVIOURS",
    "CLOCK_FORMAT",
    "EXPLICIT_ENDS",
    "THINK_OPEN",
    "Behaviour",
    "ExpectedTurn",
    "SpecReport",
    "TemplateSpec",
    "check_against_spec",
    "prompt_text",
    "spec_conversations",
    "spec_fields",
    "spec_tokenizer",
    "template_specs",
]

