"""One generated chat template: :class:`TemplateSpec`, the set of behaviour flags it has.

The spec's methods are its front door: :meth:`TemplateSpec.source` (the Jinja template, written by
:mod:`.writer`), :meth:`TemplateSpec.expected` (the turns the model generates, from
:mod:`.ground_truth`), its tokens and stop set, and :meth:`TemplateSpec.behaviours` (the names of
:data:`~.behaviours.BEHAVIOURS` it has).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ...schema import Conversation
from ..tokenizers import TokenizerSpec
from . import ground_truth, writer
from .behaviours import BEHAVIOURS
from .flags import incompatible
from .vocab import CONTROL, HEADERS, ROLE_TOKENS, TAGS

__all__ = ["TemplateSpec", "spec_fields"]


@dataclass(frozen=True)
class TemplateSpec:
    """The behaviours of one generated chat template.

    Attributes:
        header: ``chatml`` (``<|im_start|>role\\n``), ``llama``
            (``<|start_header_id|>role<|end_header_id|>\\n\\n``) or ``roletok`` (one control
            token per role, ``<|assistant|>\\n``; tool results under ``<|observation|>``).
        end: how a message ends: ``stop`` (the stop token), ``stop_nl`` (stop token then
            ``\\n``), ``nl_stop`` (``\\n``, stop token, ``\\n``: the newline is generated) or
            ``next`` (no end: the next message's header is the stop token; ``roletok`` only).
        sep_before: ``\\n`` before every message header (the first one included).
        sep_before_gen: the generation prompt starts with that ``\\n`` too.
        gen_think: the generation prompt ends with a reasoning opener ``<think>\\n``.
        suffix: constant text after every message's end (``""``: none).
        always_gen: the rendering always ends with the generation prompt, also with
            ``add_generation_prompt=False``.
        reasoning: ``none`` (the template ignores reasoning) or ``think``
            (``<think>\\n{reasoning}\\n</think>\\n\\n`` before the content).
        reasoning_key: the message key the template reads reasoning from.
        think_always: an empty ``<think>`` block for a message without reasoning.
        drop: history rewriting of reasoning: ``none``, ``before_last_user`` (Qwen3: no
            reasoning block before the last user message) or ``after_final`` (gpt-oss: no
            reasoning for a message followed by a final answer, an assistant message without
            tool calls).
        trim: content and reasoning are ``|trim`` med.
        system_to_last_user: the system prompt is written into the last user message
            (Mistral), not at the start.
        merge: ``none``, ``tools`` (consecutive tool results in one block) or ``assistant``
            (consecutive assistant messages in one block: the second one's turn is not
            determined, ``turn_not_isolated``).
        split: an assistant message with content and tool calls is written as two blocks
            (Nemotron-Nano-v2): ``turn_split``.
        tools: the template renders tool schemas, calls and results.
        tool_format: ``json`` (``<tool_call>\\n{"name": .., "arguments": ..}\\n</tool_call>``),
            ``xml`` (``<function=name><parameter=key>``, Qwen3-Coder) or ``python``
            (``[name(key=value)]``).
        args: how a ``json`` call writes its arguments: ``dict`` (``arguments|tojson``),
            ``string`` (concatenated as given text; a dict raises) or ``auto`` (text as is,
            else ``tojson``). ``xml``/``python`` iterate a dict.
        clock: the system header reads the clock, ``strftime_now("%Y-%m-%d %H:%M:%S")``.
        closed_think: the generation prompt ends with a closed, empty reasoning block
            ``<think></think>`` and the history writes ``</think>`` before every assistant
            message (DeepSeek-V3.2 without thinking): the model generates what follows it.
        trailing_turn: a fixed system turn after the last message (command-r-plus tool use):
            text after a turn's end that is no part of the turn.
        last_user_scan: how the template finds the last user message: ``forward`` (a loop over
            every message) or ``reverse`` (Qwen3's ``messages[::-1]`` scan that does nothing once
            a namespace flag is cleared: a guarded scan, :mod:`sftdata.masking.render_scan`). The
            same index either way: the text and the expected turns do not change.
    """

    header: str = "chatml"
    end: str = "stop_nl"
    sep_before: bool = False
    sep_before_gen: bool = False
    gen_think: bool = False
    suffix: str = ""
    always_gen: bool = False
    reasoning: str = "none"
    reasoning_key: str = "reasoning_content"
    think_always: bool = False
    drop: str = "none"
    trim: bool = False
    system_to_last_user: bool = False
    merge: str = "none"
    split: bool = False
    tools: bool = True
    tool_format: str = "json"
    args: str = "dict"
    clock: bool = False
    closed_think: bool = False
    trailing_turn: bool = False
    last_user_scan: str = "forward"

    def __post_init__(self) -> None:
        problems = incompatible(asdict(self))
        if problems:
            raise ValueError(f"incompatible TemplateSpec: {'; '.join(problems)}")

    # ---- tokens ---------------------------------------------------------------------

    @property
    def stop(self) -> str | None:
        """The stop token an explicit end writes (``None`` for ``end="next"``)."""
        return None if self.end == "next" else HEADERS[self.header][1]

    def control_tokens(self) -> tuple[str, ...]:
        """Control tokens of the template: special tokens of its tokenizer (single ids)."""
        return CONTROL[self.header]

    def added_tokens(self) -> tuple[str, ...]:
        """Non-special added tokens the template writes (``<think>``, ``<tool_call>``, ...)."""
        return TAGS

    def stop_tokens(self) -> tuple[str, ...]:
        """The model's stop set: the end token, or (``end="next"``) the headers that follow an
        assistant message (``<|user|>``, ``<|observation|>``)."""
        if self.end == "next":
            return (ROLE_TOKENS["user"], ROLE_TOKENS["tool"])
        return (self.stop,)

    def tokenizer_spec(self) -> TokenizerSpec:
        """The offline tokenizer this template's control and added tokens need."""
        return TokenizerSpec(special_tokens=self.control_tokens(), added_tokens=self.added_tokens())

    # ---- the template ----------------------------------------------------------------

    def after_last_message(self) -> str:
        """The constant text the template writes after the last message's end (and suffix): the
        trailing system turn, then the generation prompt when it is always written."""
        return writer.after_last_message(self)

    def source(self) -> str:
        """The Jinja chat template with these behaviours (transformers' conventions)."""
        return writer.template_source(self)

    # ---- the ground truth ------------------------------------------------------------

    def served_arguments(self) -> str:
        """How a serving stack passes tool-call arguments to this template
        (:meth:`sftdata.schema.Conversation.template_messages`'s ``arguments``)."""
        return ground_truth.served_arguments(self)

    def expected(self, conversation: Conversation) -> list[ground_truth.ExpectedTurn]:
        """For every assistant message ``k`` (trained by default): what the model generates at
        inference after the generation prompt of ``m[:k]``, up to and including the stop token,
        or the reason the row must be rejected. Written from the flags, not by rendering."""
        return ground_truth.expected_turns(self, conversation)

    def behaviours(self) -> tuple[str, ...]:
        """Names of :data:`BEHAVIOURS` this spec has."""
        return tuple(name for name, b in BEHAVIOURS.items() if b.holds(self))


def spec_fields() -> tuple[str, ...]:
    """The names of :class:`TemplateSpec`'s fields (for tables)."""
    return tuple(f.name for f in fields(TemplateSpec))
