"""Alpaca format: ``{"instruction", "input"?, "output", "system"?, "history"?}``.

→ ``Conversation(system?, *history turns, user, assistant)`` where the user text is
``instruction`` and ``input`` joined by a blank line (``"\\n\\n"``), leaving out an empty
one, and ``history`` is a list of ``[user, assistant]`` pairs (LLaMA-Factory).
"""

from __future__ import annotations

from typing import Mapping

from ..errors import Reason, RowError
from ..schema import Conversation, Message
from ._common import at, expect_list, expect_opt_str, expect_str, require, type_name
from ._fields import make_conversation


def normalize_alpaca(row: Mapping) -> Conversation:
    """Normalise an alpaca row.

    Args:
        row: the input row.

    Returns:
        The :class:`Conversation` (``system``? + history + user + assistant).

    Raises:
        RowError: ``missing_field`` (``instruction``/``output``), ``bad_type`` with the
            field (``input``, ``history[1]``, ``history[1][0]``), ``empty_conversation``
            when instruction and input are both empty.
    """
    instruction = expect_str(require(row, "instruction"), "instruction")
    output = expect_str(require(row, "output"), "output")
    extra = expect_opt_str(row.get("input"), "input") or ""
    system = expect_opt_str(row.get("system"), "system")
    messages = []
    if system:
        messages.append(Message("system", system))
    history = row.get("history")
    if history is not None:
        for i, pair in enumerate(expect_list(history, "history")):
            with at(f"history[{i}]"):
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise RowError(Reason.BAD_TYPE, f"a history item must be a [user, assistant] pair, got {type_name(pair)}", field=None)
                messages.append(Message("user", expect_str(pair[0], "[0]")))
                messages.append(Message("assistant", expect_str(pair[1], "[1]")))
    user = "\n\n".join(p for p in (instruction, extra) if p)
    if not user:
        raise RowError(Reason.EMPTY_CONVERSATION, "instruction and input are both empty", field="instruction")
    messages.append(Message("user", user))
    messages.append(Message("assistant", output))
    return make_conversation(messages, None, "instruction")
