"""The catalogue of the chat templates bundled in the ``trl`` wheel: for each template file
stem, the token layout of its model (:class:`~sftdata.testing.tokenizers.TokenizerSpec`), what
it renders faithfully (:class:`~sftdata.testing.tokenizers.TemplateCaps`) and notes on its
behaviour; read by :mod:`sftdata.testing.trl_templates`.

* :data:`TRL_SPECS`: stem -> ``(spec, caps)``; a ``<stem>_training`` variant reuses its base
  entry (with generation markers).
* :data:`TRL_NOTES`: stem -> what the template does to a conversation.
* :data:`TRAINING_CAPS`: capability overrides of training variants.
* :data:`TRL_SKIPPED`: templates left out, with the reason.
"""

from __future__ import annotations

from .tokenizers import GEMMA_SPEC, LLAMA3_SPEC, QWEN3_SPEC, QWEN25_SPEC, THINK_TAGS, TOOL_TAGS, TemplateCaps, TokenizerSpec

__all__ = ["GLM_SPEC", "GPTOSS_SPEC", "PHI3_SPEC", "TRAINING_CAPS", "TRL_NOTES", "TRL_SKIPPED", "TRL_SPECS"]

_PHI3_ROLE_TOKENS = ("<|assistant|>", "<|end|>", "<|system|>", "<|user|>")
PHI3_SPEC = TokenizerSpec(
    special_tokens=("<unk>", "<s>", "</s>", "<|endoftext|>") + _PHI3_ROLE_TOKENS,
    bos_token="<s>",
    eos_token="<|endoftext|>",
    pad_token="<|endoftext|>",
    unk_token="<unk>",
    rstrip=_PHI3_ROLE_TOKENS,
)
_COHERE_SPEC = TokenizerSpec(
    special_tokens=(
        "<PAD>", "<UNK>", "<BOS_TOKEN>", "<EOS_TOKEN>", "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
        "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>", "<|START_RESPONSE|>", "<|END_RESPONSE|>",
    ),
    bos_token="<BOS_TOKEN>",
    eos_token="<|END_OF_TURN_TOKEN|>",
    pad_token="<PAD>",
    unk_token="<UNK>",
    add_bos=True,
)
_DEEPSEEK_SPEC = TokenizerSpec(
    special_tokens=(
        "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
        "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
        "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
        "<｜tool▁sep｜>",
    ),
    added_tokens=THINK_TAGS,
    bos_token="<｜begin▁of▁sentence｜>",
    eos_token="<｜end▁of▁sentence｜>",
    pad_token="<｜end▁of▁sentence｜>",
    add_bos=True,
)
GLM_SPEC = TokenizerSpec(
    special_tokens=(
        "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
        "<|assistant|>", "<|observation|>",
    ),
    added_tokens=TOOL_TAGS + THINK_TAGS + ("<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"),
    eos_token="<|endoftext|>",
    pad_token="<|endoftext|>",
)
GPTOSS_SPEC = TokenizerSpec(
    special_tokens=(
        "<|startoftext|>", "<|endoftext|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>",
        "<|constrain|>", "<|return|>", "<|call|>",
    ),
    bos_token="<|startoftext|>",
    eos_token="<|return|>",
    pad_token="<|endoftext|>",
)
_GEMMA3_SPEC = TokenizerSpec(
    special_tokens=GEMMA_SPEC.special_tokens + ("<start_of_image>", "<end_of_image>"),
    bos_token="<bos>",
    eos_token="<eos>",
    pad_token="<pad>",
    unk_token="<unk>",
    add_bos=True,
)
_GEMMA4_SPEC = TokenizerSpec(
    special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
    + (
        "<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>",
        "<|tool_response>", "<tool_response|>", '<|"|>', "<|think|>", "<|image|>", "<|audio|>", "<|video|>",
    ),
    bos_token="<bos>",
    eos_token="<eos>",
    pad_token="<pad>",
    unk_token="<unk>",
    add_bos=True,
)
_LFM2_SPEC = TokenizerSpec(
    special_tokens=(
        "<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|tool_list_start|>",
        "<|tool_list_end|>", "<|tool_call_start|>", "<|tool_call_end|>", "<|tool_response_start|>",
        "<|tool_response_end|>", "<image>",
    ),
    added_tokens=THINK_TAGS,
    bos_token="<|startoftext|>",
    eos_token="<|im_end|>",
    pad_token="<|pad|>",
)
_NEMOTRON_SPEC = TokenizerSpec(
    special_tokens=("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"),
    added_tokens=TOOL_TAGS + THINK_TAGS,
    bos_token="<s>",
    eos_token="<|im_end|>",
    unk_token="<unk>",
)
_MUSE_SPEC = TokenizerSpec(
    special_tokens=(
        "<|begin_of_text|>", "<|end_of_text|>", "<|start|>", "<|message|>", "<|eot|>", "<|eom|>", "<|patch|>",
        "<|video|>",
    ),
    bos_token="<|begin_of_text|>",
    eos_token="<|eot|>",
)

#: What each template does to a conversation (stem -> note).
TRL_NOTES = {
    "qwen2_5": "Default system prompt; reasoning dropped. As in real Qwen2.5, <tool_response> is plain text "
    "(not an added token).",
    "qwen3": "Reasoning shown only after the last real user query; a final assistant turn always gets a think block.",
    "qwen3_5_think": "Raises on a system message that is not first; <function=...>/<parameter=...> tool calls.",
    "qwen3_5_nothink": "As qwen3_5_think, but the generation prompt defaults to an empty think block.",
    "qwen3_6": "As qwen3_5_think, plus a preserve_thinking flag.",
    "qwen3_8": "As qwen3_6, plus reasoning_effort (prepends an instruction to the system prompt).",
    "qwen3_instruct_2507": "No reasoning support.",
    "qwen3_vl": "No reasoning support; a system message that is not first is silently dropped.",
    "qwen2_5_vl": "No tools: tool_calls are silently dropped and tool messages render as a `tool` ChatML turn.",
    "llama3": "Llama 3.0: no tools (tool_calls silently dropped); every content trimmed.",
    "llama3_1": "Single tool call per message (raises otherwise); content beside tool calls is dropped; a "
    "tool-result string is rendered with tojson (strings are 'iterable' in Jinja), so it appears quoted; "
    "tools go in the first user turn by default (tools_in_user_message).",
    "llama3_2": "Like llama3_1 (single tool call; tools in the first user turn); today's date via strftime_now.",
    "phi3": "No tools (tool messages and calls silently dropped); eos_token appended when "
    "add_generation_prompt is false; role tokens rstrip whitespace like the real Phi-3 tokenizer "
    "(the newline after <|end|> is swallowed into the token), so decode(encode(text)) != text.",
    "phi3_5": "As phi3; an empty system message is skipped.",
    "gemma": "No system role (raises), strict user/model alternation, no tools, content trimmed.",
    "gemma3": "System folded into the first user turn; strict alternation; no tools; content trimmed.",
    "cohere": "Strict alternation, no tools, content stripped.",
    "cohere2": "Long built-in preamble; strict alternation; no tools.",
    "deepseekv3": "Tool-call arguments are concatenated as strings, so dict arguments raise: no tool calls. "
    "All system messages are moved to the top. Content up to </think> is cut.",
    "deepseekv3_training": "Arguments rendered with tojson, so one tool-calling message renders; caps still "
    "say tools=False because (1) `ns.is_first` never resets, so every later tool-calling message loses its "
    "<｜Assistant｜><｜tool▁calls▁begin｜> opener, (2) the <｜tool▁outputs▁end｜> written after trailing tool "
    "results is not written when a tool-calling message follows (earlier text changes: not prefix-stable), "
    "and (3) content=None beside calls fails (transformers drops None-valued keys; `content is none` is "
    "false for an undefined value). All system messages are moved to the top.",
    "deepseek_r1_distill": "Drops tool calls when content is set; no tool support; reasoning not rendered.",
    "glm4moe": "Reasoning only after the last user turn; tool calls as <arg_key>/<arg_value> XML.",
    "gptoss": "Harmony format; today's date via strftime_now (renders change from day to day); a system "
    "message that is not first is dropped; only one tool call per message is rendered; content and "
    "thinking together on a tool-call message raise; the final assistant turn ends with <|return|>.",
    "lfm2": "Assistant tool_calls silently dropped (the model writes them as text); no reasoning.",
    "lfm2_v2": "Python-style calls inside <|tool_call_start|>[...]<|tool_call_end|>; no reasoning.",
    "lfm2_2_5": "Has {% generation %} markers natively; <think> read from `thinking`.",
    "lfm2_2_5_v2": "Has {% generation %} markers natively; <think> read from thinking/reasoning/reasoning_content.",
    "lfm2_2_5_vl": "Has {% generation %} markers natively.",
    "nemotron_3_nano": "Hermes/XML-style <function=...> tool calls; reasoning handling like Qwen3.5.",
    "nemotron_3_super": "As nemotron_3_nano, plus a low_effort flag.",
    "nemotron_3_ultra": "As nemotron_3_nano, plus a medium_effort flag.",
    "nemotron_3_5_lightning": "As nemotron_3_ultra without medium_effort.",
    "muse_glimmer": "ATEM protocol; today's date via strftime_now; content beside tool calls is not rendered "
    "verbatim; arguments must be a dict.",
    "gemma4": "Gemma 4 <|turn>ROLE ... <turn|> format; reasoning of a final assistant turn is not rendered.",
    "gemma4_v2": "As gemma4; no reasoning in tool-calling turns either.",
    "gemma4_v3": "As gemma4.",
    "gemma4_v4": "As gemma4.",
    "gemma4_v5": "Gemma 4 format; renders the reasoning of a final assistant turn.",
    "diffusion_gemma": "Gemma 4-style format with reasoning.",
}

#: stem -> (spec, caps). Training variants ("<stem>_training") reuse their base entry, with generation markers.
TRL_SPECS: dict[str, tuple[TokenizerSpec, TemplateCaps]] = {}


def _register(stems: tuple[str, ...], spec: TokenizerSpec, caps: TemplateCaps) -> None:
    """Give every stem of ``stems`` the entry ``(spec, caps)``."""
    for stem in stems:
        TRL_SPECS[stem] = (spec, caps)


_register(("qwen2_5",), QWEN25_SPEC, TemplateCaps(multi_system=True))
_register(("qwen2_5_vl",), QWEN25_SPEC, TemplateCaps(tools=False, parallel_calls=False, multi_system=True))
_register(("qwen3",), QWEN3_SPEC, TemplateCaps(reasoning=True, multi_system=True))
_register(("qwen3_5_think", "qwen3_5_nothink", "qwen3_6", "qwen3_8"), QWEN3_SPEC, TemplateCaps(reasoning=True))
_register(("qwen3_instruct_2507",), QWEN3_SPEC, TemplateCaps(multi_system=True))
_register(("qwen3_vl",), QWEN3_SPEC, TemplateCaps())
_register(("llama3",), LLAMA3_SPEC, TemplateCaps(tools=False, parallel_calls=False, multi_system=True))
_register(
    ("llama3_1", "llama3_2"),
    LLAMA3_SPEC,
    TemplateCaps(parallel_calls=False, call_content=False, multi_system=True),
)
_register(("phi3", "phi3_5"), PHI3_SPEC, TemplateCaps(tools=False, parallel_calls=False, multi_system=True))
_register(("gemma",), GEMMA_SPEC, TemplateCaps(system=False, tools=False, parallel_calls=False, alternating=True))
_register(("gemma3",), _GEMMA3_SPEC, TemplateCaps(tools=False, parallel_calls=False, alternating=True))
_register(("cohere",), _COHERE_SPEC, TemplateCaps(tools=False, parallel_calls=False, alternating=True))
_register(
    ("cohere2",), _COHERE_SPEC, TemplateCaps(tools=False, parallel_calls=False, alternating=True, multi_system=True)
)
_register(
    ("deepseekv3", "deepseek_r1_distill"),
    _DEEPSEEK_SPEC,
    TemplateCaps(tools=False, parallel_calls=False, none_content=False),
)
_register(("glm4moe",), GLM_SPEC, TemplateCaps(reasoning=True, multi_system=True))
_register(("gptoss",), GPTOSS_SPEC, TemplateCaps(reasoning=True, parallel_calls=False, call_content=False))
_register(("lfm2",), _LFM2_SPEC, TemplateCaps(tools=False, parallel_calls=False, multi_system=True))
_register(("lfm2_v2",), _LFM2_SPEC, TemplateCaps(multi_system=True))
_register(("lfm2_2_5", "lfm2_2_5_v2", "lfm2_2_5_vl"), _LFM2_SPEC, TemplateCaps(reasoning=True, multi_system=True))
_register(
    ("nemotron_3_nano", "nemotron_3_super", "nemotron_3_ultra", "nemotron_3_5_lightning"),
    _NEMOTRON_SPEC,
    TemplateCaps(reasoning=True, multi_system=True),
)
_register(("muse_glimmer",), _MUSE_SPEC, TemplateCaps(reasoning=True, call_content=False, multi_system=True))
_register(("gemma4", "gemma4_v2", "gemma4_v3", "gemma4_v4"), _GEMMA4_SPEC, TemplateCaps(multi_system=True))
_register(("gemma4_v5", "diffusion_gemma"), _GEMMA4_SPEC, TemplateCaps(reasoning=True, multi_system=True))

#: Training variants whose capabilities differ from their base template's (none at present:
#: deepseekv3_training renders dict arguments, but its tool rendering is still unusable for
#: traces with more than one tool-calling message, see its notes).
TRAINING_CAPS: dict[str, dict] = {}

#: Templates deliberately left out, with the reason.
TRL_SKIPPED: dict[str, str] = {
    "idefics3": "multimodal only: expects content as a list of {type: text|image} blocks; a string content "
    "renders as nothing (each character is a 'block' without a type), so text would silently vanish",
    "smolvlm": "multimodal only: same as idefics3 (string content silently renders as nothing)",
    "llava_next": "multimodal only: reads message['content'][0]['text']; string content raises",
}
