"""The values rendering produces (:mod:`sftdata.masking.render` describes how): the turn policy,
one trained turn held against the training rendering, a rendered conversation, and the rendering
counters summed into ``stats.json``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["RenderStats", "Rendered", "Turn", "TurnPolicy"]


class TurnPolicy(str, Enum):
    """Which trained turns are kept, and where.

    * ``exact`` (default): every trained token is what the model generates at that turn at
      inference. A turn the template renders differently in history becomes its own
      sequence ``P_k + G_k``, merged with the rendering into one prefix tree.
    * ``all``: one rendering ``F``; a turn is trained where ``F`` holds it verbatim (on tokens),
      or, for templates with ``{% generation %}`` blocks, inside those blocks (transformers'
      ``return_assistant_tokens_mask``); any other row is rejected (``turn_rewritten``).
    * ``last``: only the final trained turn, exactly.
    """

    EXACT = "exact"
    ALL = "all"
    LAST = "last"


@dataclass(frozen=True, slots=True)
class Turn:
    """One trained turn as text, held against the training rendering ``F`` so that a long
    conversation's turns do not each keep a copy of their prompt (memory grows with what the
    turns do not share with ``F``, not with turns x length)::

        P_k = base[:prompt_shared] + prompt_tail        (base is F: one string, referenced)
        G_k = generated

    Attributes:
        message: index of the message.
        mode: ``prefix`` | ``prompt_mismatch`` | ``history_rewritten`` (see the module doc).
        base: ``F``, the conversation's training rendering (the same object for every turn).
        prompt_shared: ``P_k`` starts with ``base[:prompt_shared]`` (characters).
        prompt_tail: the rest of ``P_k`` (empty when ``P_k`` is a prefix of ``F``).
        generated: ``G_k``, what the model generates (up to and including the stop token).
        masked: character ranges of ``generated`` left untrained (reasoning text with
            ``train_reasoning=False``).
    """

    message: int
    mode: str
    base: str
    prompt_shared: int
    prompt_tail: str
    generated: str
    masked: tuple[tuple[int, int], ...] = ()

    @property
    def prompt(self) -> str:
        """``P_k``, the text the model sees (built on each access: O(its length))."""
        return self.base[: self.prompt_shared] + self.prompt_tail


@dataclass(frozen=True, slots=True)
class Rendered:
    """A conversation rendered for training.

    Attributes:
        text: ``F``, the training rendering.
        turns: the trained turns, in message order.
        generation_spans: character spans of ``{% generation %}`` blocks in ``text`` (policy
            ``all`` on a template that has them), else ``None``.
    """

    text: str
    turns: tuple[Turn, ...]
    generation_spans: tuple[tuple[int, int], ...] | None = None


@dataclass(slots=True)  # one per row (RowResult.counters): no per-instance dict
class RenderStats:
    """Counters of rendering, summed into ``stats.json``."""

    turns: int = 0
    turns_not_rendered: int = 0  # the template renders nothing for the turn (it drops an empty message)
    prompt_mismatch: int = 0
    history_rewritten: int = 0
    no_stop_token: int = 0
    stop_token_from_next_message: int = 0
    reasoning_not_rendered: int = 0
    trimmed_trailing_messages: int = 0
    content_none_as_empty: int = 0
    tool_arguments_converted: int = 0
    tool_calls_without_schema: int = 0  # rendered calls naming a tool the row gives no schema for
    rows_with_calls_without_schema: int = 0
