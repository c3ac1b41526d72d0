"""The behaviours of real chat templates the generator combines, by name (:data:`BEHAVIOURS`).

A :class:`Behaviour` is a set of :class:`~.spec.TemplateSpec` flag values that gives a spec the
behaviour (``require``) and the values a spec without it is drawn from (``avoid``); the
parametrized tests and ``bench/template_gen.py`` draw specs per behaviour with
:func:`~.strategies.template_specs`. A new template behaviour is a new flag (in
:mod:`.flags`, written by :mod:`.writer`, its turns in :mod:`.ground_truth`) and an entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from .vocab import EXPLICIT_ENDS

if TYPE_CHECKING:
    from .spec import TemplateSpec

__all__ = ["BEHAVIOURS", "Behaviour"]


@dataclass(frozen=True)
class Behaviour:
    """One behaviour of real templates: the field values that make a spec have it
    (``require``) and the values a spec without it is drawn from (``avoid``)."""

    require: Mapping[str, tuple]
    avoid: Mapping[str, tuple]
    doc: str

    def holds(self, spec: TemplateSpec) -> bool:
        """Whether ``spec`` shows this behaviour (every required flag has an allowed value)."""
        return all(getattr(spec, k) in v for k, v in self.require.items())


_EXPLICIT = {"end": EXPLICIT_ENDS}
_THINK = {"reasoning": ("think",)}
_TOOLS = {"tools": (True,)}
_B = Behaviour
#: The behaviours the generator combines, by name (the parametrized tests and the bench use them).
BEHAVIOURS: dict[str, Behaviour] = {
    "plain_chatml": _B({"header": ("chatml",), **_EXPLICIT}, {}, "ChatML headers, an explicit stop token"),
    "llama_headers": _B({"header": ("llama",), **_EXPLICIT}, {}, "Llama 3 headers (<|start_header_id|>role<|end_header_id|>)"),
    "separator_before_headers": _B({**_EXPLICIT, "sep_before": (True,), "sep_before_gen": (False,)},
                                   {"sep_before_gen": (True,)}, "'\\n' before every header, none before the generation prompt"),
    "separator_before_generation_prompt_too": _B({**_EXPLICIT, "sep_before": (True,), "sep_before_gen": (True,)}, {},
                                                 "'\\n' before every header and the generation prompt"),
    "reasoning_opener": _B({"gen_think": (True,)}, {"gen_think": (False,)}, "the generation prompt ends with <think>\\n"),
    "constant_suffix": _B({**_EXPLICIT, "suffix": ("\n", "---\n")}, {"suffix": ("",)}, "constant text after every message"),
    "always_generation_prompt": _B({**_EXPLICIT, "always_gen": (True,)}, {"always_gen": (False,)},
                                   "the rendering always ends with the generation prompt"),
    "stop_then_newline": _B({"end": ("stop_nl",)}, {}, "<stop>\\n after every message"),
    "stop_bare": _B({"end": ("stop",)}, {}, "<stop> and nothing after it"),
    "newline_then_stop": _B({"end": ("nl_stop",)}, {"end": ("stop", "stop_nl", "next")}, "\\n<stop>\\n: the newline is generated"),
    "stop_from_next_message": _B({"header": ("roletok",), "end": ("next",)}, {"end": EXPLICIT_ENDS},
                                 "no end token: the next header (<|user|>, <|observation|>) is the stop"),
    "reasoning_dropped_before_last_user": _B({**_THINK, "drop": ("before_last_user",)}, {"drop": ("none", "after_final")},
                                             "Qwen3: no reasoning before the last user message"),
    "analysis_dropped_after_final": _B({**_THINK, "drop": ("after_final",)}, {"drop": ("none", "before_last_user")},
                                       "gpt-oss: no reasoning once a final answer follows"),
    "empty_think_block": _B({**_THINK, "think_always": (True,)}, {"think_always": (False,)}, "an empty <think> block without reasoning"),
    "system_into_last_user": _B({"system_to_last_user": (True,)}, {"system_to_last_user": (False,)},
                                "Mistral: the system prompt inside the last user message"),
    "merged_tool_messages": _B({**_TOOLS, "merge": ("tools",)}, {}, "consecutive tool results in one block"),
    "merged_assistant_messages": _B({**_EXPLICIT, "merge": ("assistant",)}, {"merge": ("none", "tools")},
                                    "consecutive assistant messages in one block (turn_not_isolated)"),
    "split_message": _B({**_EXPLICIT, **_TOOLS, "split": (True,)}, {"split": (False,)},
                        "content and tool calls as two blocks (turn_split)"),
    "tool_calls_json": _B({**_TOOLS, "tool_format": ("json",)}, {}, "<tool_call>{\"name\", \"arguments\"}</tool_call>"),
    "tool_calls_xml": _B({**_TOOLS, "tool_format": ("xml",)}, {}, "<function=name><parameter=key>"),
    "tool_calls_python": _B({**_TOOLS, "tool_format": ("python",)}, {}, "[name(key=value)]"),
    "arguments_dict": _B({**_TOOLS, "tool_format": ("json",), "args": ("dict",)}, {}, "arguments|tojson"),
    "arguments_string": _B({**_TOOLS, "tool_format": ("json",), "args": ("string",)}, {}, "arguments concatenated as given text"),
    "arguments_auto": _B({**_TOOLS, "tool_format": ("json",), "args": ("auto",)}, {}, "text as given, else tojson"),
    "clock": _B({"clock": (True,)}, {"clock": (False,)}, "strftime_now in the system header"),
    "reasoning_key_reasoning_content": _B({**_THINK, "reasoning_key": ("reasoning_content",)}, {}, "message.reasoning_content"),
    "reasoning_key_reasoning": _B({**_THINK, "reasoning_key": ("reasoning",)}, {"reasoning_key": ("reasoning_content", "thinking")},
                                  "message.reasoning"),
    "reasoning_key_thinking": _B({**_THINK, "reasoning_key": ("thinking",)}, {}, "message.thinking"),
    "trim": _B({"trim": (True,)}, {}, "content and reasoning |trim"),
    "closed_empty_think_prompt": _B({"gen_think": (False,), "reasoning": ("none",), "closed_think": (True,)}, {"closed_think": (False,)},
                                    "DeepSeek-V3.2: the prompt ends <think></think>, history writes </think> before each turn"),
    "trailing_system_turn": _B({**_EXPLICIT, "trailing_turn": (True,)}, {"trailing_turn": (False,)},
                               "command-r-plus: a fixed system turn after the last message"),
    "last_user_reverse_scan": _B({"last_user_scan": ("reverse",)}, {"last_user_scan": ("forward",)},
                                 "Qwen3: the last user message found by a guarded messages[::-1] scan"),
}
