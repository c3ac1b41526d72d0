"""Helpers shared by the Masks v3 tests (tests/masking/test_masks_v3_*.py): the smallest ChatML
templates with one behaviour each, a tokenizer for them, a two-turn conversation, the texts of
the trained runs, and one encode.
"""

from __future__ import annotations

import copy

from sftdata.encoder import EncodeOptions, Encoder
from sftdata.schema import Conversation, Message
from sftdata.testing.oracle import trained_runs
from sftdata.testing.tokenizers import build_tokenizer


_CHATML_STOP = ("<|im_end|>",)
_LOOP = "{%- for m in messages %}"
_GEN = "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"

#: a separator before every message header, none before the generation prompt
SEPARATOR = _LOOP + "{{ '\\n<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>' }}{%- endfor %}" + _GEN
#: the generation prompt is written at the end of every rendering, also without add_generation_prompt
ALWAYS_PROMPT = _LOOP + "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}{{ '<|im_start|>assistant\\n' }}"
#: a constant suffix after every message's stop token
SUFFIX = _LOOP + "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n---\\n' }}{%- endfor %}" + _GEN
#: a system header that reads the clock (to the microsecond: two readings always differ)
CLOCK = ("{{ '<|im_start|>system\\nnow ' + strftime_now('%Y-%m-%d %H:%M:%S.%f') + '<|im_end|>\\n' }}" + _LOOP
         + "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}" + _GEN)
#: reasoning read from ``message.reasoning`` (as templates following OpenAI's naming do)
REASONING = (_LOOP + "{{ '<|im_start|>' + m.role + '\\n' }}{%- if m.reasoning %}{{ '<think>' + m.reasoning + '</think>' }}{%- endif %}"
             "{{ m.content + '<|im_end|>\\n' }}{%- endfor %}" + _GEN)
#: a message split in two blocks: the content, then its reasoning after the stop token
SPLIT = (_LOOP + "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- if m.reasoning_content %}"
         "{{ '(' + m.reasoning_content + ')\\n' }}{%- endif %}{%- endfor %}" + _GEN)


def _tok(source: str):
    """A copy of the offline ChatML tokenizer with ``source`` as its chat template."""
    tok = copy.copy(build_tokenizer("chatml"))
    tok.chat_template = source
    return tok


def _conv(reasoning: str | None = None) -> Conversation:
    """Two user/assistant exchanges; the first answer carries ``reasoning`` (``None``: none)."""
    return Conversation((
        Message("user", "hello there"),
        Message("assistant", "hi friend", reasoning=reasoning),
        Message("user", "again please"),
        Message("assistant", "sure thing"),
    ))


def _trained_texts(tok, rows) -> list[str]:
    """The decoded text of every trained run of every row (special tokens kept)."""
    return [tok.backend_tokenizer.decode(run, skip_special_tokens=False) for r in rows for _, run in trained_runs(r)]


def _encode(source: str, conv: Conversation | None = None, **kw):
    """``(tokenizer, encoder, conversation, rows)``: ``conv`` (default :func:`_conv`) encoded under
    ``source`` with the ChatML stop token; ``kw`` are more ``EncodeOptions``."""
    tok = _tok(source)
    enc = Encoder(tok, EncodeOptions(stop_tokens=_CHATML_STOP, **kw))
    conv = conv or _conv()
    return tok, enc, conv, enc.encode(conv)
