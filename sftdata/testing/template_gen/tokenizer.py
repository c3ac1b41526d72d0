"""Offline tokenizers for generated templates (one BPE per process, one wrapper per token set)."""

from __future__ import annotations

import copy
import functools

from ..tokenizers import TokenizerSpec, make_tokenizer
from .spec import TemplateSpec

__all__ = ["spec_tokenizer"]


@functools.lru_cache(maxsize=None)
def _base_tokenizer(spec: TokenizerSpec):
    return make_tokenizer(spec, None, name_or_path="sftdata-test/generated")


def spec_tokenizer(spec: TemplateSpec):
    """An offline tokenizer with ``spec``'s control tokens (special) and tags (added) and its
    template. The BPE is trained once per process and one wrapper is built per token set; each
    call returns a shallow copy with its own ``chat_template``. No EOS is set: the stop set is
    :meth:`TemplateSpec.stop_tokens`, passed to sftdata explicitly."""
    tok = copy.copy(_base_tokenizer(spec.tokenizer_spec()))
    tok.chat_template = spec.source()
    return tok
