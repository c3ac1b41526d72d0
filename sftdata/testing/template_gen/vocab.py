"""The vocabulary of generated chat templates: headers, role and control tokens, tags, markers.

Constants shared by the template writer (:mod:`.writer`), the ground truth (:mod:`.ground_truth`),
the behaviour table (:mod:`.behaviours`) and the conversation strategy (:mod:`.strategies`), and
the two text helpers both the writer and the ground truth use (:func:`jinja_literal`,
:func:`tojson`).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CLOCK_FORMAT",
    "CONTROL",
    "EXPLICIT_ENDS",
    "HEADERS",
    "MARKERS",
    "ROLE_MAP_JINJA",
    "ROLE_TOKENS",
    "TAGS",
    "THINK_OPEN",
    "jinja_literal",
    "tojson",
]

HEADERS = {
    # name -> (header before the role's text, stop token written by an explicit end)
    "chatml": ("<|im_start|>{role}\n", "<|im_end|>"),
    "llama": ("<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>"),
    "roletok": ("{role}\n", "<|end|>"),  # GLM-like: every role is a control token
}
#: the control token of every role under the ``roletok`` header
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>", "tool": "<|observation|>"}
#: header name -> the special tokens (single ids) of its tokenizer
CONTROL = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "llama": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "roletok": tuple(ROLE_TOKENS.values()) + ("<|end|>",),
}
#: non-special added tokens every generated template may write (as Qwen3's tokenizer has them)
TAGS = ("<think>", "</think>", "<tool_call>", "</tool_call>")
#: plain-text markers the templates write; kept out of generated message text
MARKERS = ("<tool_response>", "</tool_response>", "<function=", "</function>", "<parameter=", "</parameter>")

THINK_OPEN = "<think>\n"
CLOCK_FORMAT = "%Y-%m-%d %H:%M:%S"
EXPLICIT_ENDS = ("stop", "stop_nl", "nl_stop")

#: a Jinja dict literal mapping each role to its ``roletok`` control token
ROLE_MAP_JINJA = "{" + ", ".join(f"{_r!r}: {_t!r}" for _r, _t in ROLE_TOKENS.items()) + "}"


def jinja_literal(text: str) -> str:
    """A Jinja string literal of ``text`` (single-quoted; backslash, quote and newline escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def tojson(value: Any) -> str:
    """What transformers' ``tojson`` writes (``json.dumps``, ``ensure_ascii=False``)."""
    return json.dumps(value, ensure_ascii=False)
