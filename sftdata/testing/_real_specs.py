"""The table behind :mod:`sftdata.testing.real_templates`: per vendored template, its model, tokens, caps and stops.

Facts about the real tokenizers come from public copies of the models' ``tokenizer_config.json`` /
``generation_config.json`` found with a code search (quoted in ``templates/real/README.md``); what
could not be confirmed that way says ``unverified`` in the entry's notes or ``stop_source``.
Everything else (caps, quirks) was read off the template text and checked by rendering it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .real_tokens import (
    COHERE_R7B_SPEC, DEVSTRAL_PROSE, DS_BOS, DS_EOS, DS_TOOL, GLM_NOTES_TOKENS, GLM_STOPS, HERMES_NOTES, HERMES_SPEC,
    KIMI_NOTES, KIMI_SPEC, KIMI_STOP_SOURCE, LLAMA_STOPS, LLAMA_STOP_SOURCE, MISTRAL_BASE, MISTRAL_STOP_SOURCE,
    MISTRAL_V11, NEMOTRON3_SPEC, QWEN_STOPS, QWEN_STOP_SOURCE, XML_TOOLS, mistral_spec
)
from .tokenizers import GEMMA_SPEC, LLAMA3_SPEC, QWEN3_SPEC, QWEN25_SPEC, THINK_TAGS, TOOL_TAGS, TemplateCaps, TokenizerSpec
from .trl_specs import GLM_SPEC, GPTOSS_SPEC, PHI3_SPEC

#: The fork of ggml-org/llama.cpp the files were copied from, and its snapshot.
FORK = "Anemll/anemll-flash-llama.cpp"
FORK_HEAD = "64e25509bb48a6104720ba1021197d32f677f653"


@dataclass(frozen=True)
class Entry:
    """One vendored template (see :class:`sftdata.testing.real_templates.RealTemplate` for the fields).

    ``commit`` is the llama.cpp commit whose ``models/templates/<name>.jinja`` is vendored (a
    ggml-org/llama.cpp commit, also in the fork's history); ``edited_by`` names the later llama.cpp
    commit(s) that changed the file and were *not* taken, because they depart from the model's own
    template. ``plain_markers`` are markup strings the template writes that are *not* tokens of the
    real tokenizer (ordinary text there, so they may be split by the BPE).
    """

    model: str
    spec: TokenizerSpec
    caps: TemplateCaps
    stop_tokens: tuple[str, ...]
    stop_source: str
    commit: str
    notes: str = ""
    template_kwargs: dict = field(default_factory=dict)
    plain_markers: tuple[str, ...] = ()
    edited_by: str = ""


_C = {  # llama.cpp commits (ggml-org/llama.cpp history, also in the fork)
    "qwen3": "e121edc4324a640be11b7e567edd39b721b0f8e4",
    "qwq": "f5cd27b71da3ac375a04a41643d14fc779a8057b",
    "xml": "1920345c3bcec451421bb6abc4981678cc721154",
    "tools": "8b576b6c55bc4e6be898b47522f0ef402b93ef62",
    "small32": "901e20bbe571fbde48d13eb188f4e7cdc7562fb6",
    "voxtral": "00fa15fedc79263fa0285e6a3bbb0cfb3e3878a2",
    "nemov2": "b2426e469e2fdb6c44216d56baa4cfff4f39ae00",
    "jinja": "c15395f73c42805d9609a55749a1d4b5b2251379",
    "dsv31": "88021565f08e0b7c4e07ac089a15ec16fae9166c",
    "r1qwen": "c7f460ab882065ec5696e3d51e24dbf67b539287",
    "harmony": "b204a5a234f4cf0b3f449476da639a5510c6d157",
    "apertus": "34fcc5a4ace8c69476ef2ea3857f39a60334acc4",
    "autoparser": "566059a26b0ce8faec4ea053605719d399c64cc5",
    "granite": "3db4da56a5a00c4b47bbb3b18f85fb4473662adb",
    "seed": "60e5eee31f1af9bb579ac45380e3857d610020b9",
    "r7b": "bfcce4d693617ec843d0b2510f6ee16e6bc6720d",
    "prefill": "5e54d51b199ad2d70cf6eba4bff756bbf63366a6",
    "kimifix": "636fc17a376dacc01da20d508e6986a299b1f819",
}

ENTRIES: dict[str, Entry] = {}


def _add(name: str, entry: Entry) -> None:
    ENTRIES[name] = entry


# ---- Qwen -----------------------------------------------------------------------------------

_add("Qwen-Qwen3-0.6B", Entry(
    "Qwen/Qwen3-0.6B", QWEN3_SPEC, TemplateCaps(reasoning=True, none_content=False, multi_system=True),
    QWEN_STOPS, QWEN_STOP_SOURCE, _C["qwen3"], plain_markers=("<tools>", "</tools>"),
    notes="Tokens as in sftdata.testing.qwen3 (from Qwen3's tokenizer.json). Reasoning rendered only after the last "
    "real user query (history rewritten when a user turn follows); a final assistant turn always gets a think "
    "block; content=None beside calls raises (message.content undefined once transformers drops None keys).",
))
_add("Qwen-QwQ-32B", Entry(
    "Qwen/QwQ-32B", QWEN3_SPEC, TemplateCaps(none_content=False, multi_system=True),
    QWEN_STOPS, "unverified: assumed the Qwen family's " + QWEN_STOP_SOURCE, _C["qwq"],
    plain_markers=("<tools>", "</tools>"),
    notes="Added tokens assumed as in Qwen3 (QwQ's <think>/<tool_response> tokens: unverified). Never renders "
    "reasoning fields: earlier assistant content is cut after '</think>'; the generation prompt ends with "
    "'<think>\\n', which history turns do not have (the prompt and the rendered turn differ). content=None raises.",
    edited_by=f"{_C['autoparser']} (adds an enable_thinking branch to the generation prompt)",
))
_add("Qwen3-Coder", Entry(
    "Qwen/Qwen3-Coder-30B-A3B-Instruct", QWEN3_SPEC, TemplateCaps(multi_system=True),
    QWEN_STOPS, "unverified: assumed the Qwen family's " + QWEN_STOP_SOURCE, _C["xml"],
    notes="XML tool calls (<function=...><parameter=...>), argument values written raw (strings) or as JSON; content "
    "beside calls trimmed; no reasoning. Added tokens assumed as in Qwen3 (unverified for the Coder tokenizer); "
    "<function=...>, <parameter=...>, <tools> are plain text. Hub repo: the Qwen3-Coder family (llama.cpp's file "
    "has no repo suffix; its text matches Qwen3-Coder-30B-A3B-Instruct / 480B-A35B-Instruct).",
    plain_markers=XML_TOOLS,
    edited_by=f"{_C['autoparser']} (rewords the tool instructions)",
))
_add("Qwen-Qwen2.5-7B-Instruct", Entry(
    "Qwen/Qwen2.5-7B-Instruct", QWEN25_SPEC, TemplateCaps(multi_system=True),
    QWEN_STOPS, "generation_config.json eos_token_id [151645, 151643] (quoted in public code with Qwen2.5's "
    "sampling defaults)", _C["tools"],
    notes="Default system prompt when none is given; reasoning dropped. As in the real Qwen2.5 vocabulary "
    "(151643-151664, same layout as the R1-Distill-Qwen tokenizer quoted publicly) <tool_call> is an added token "
    "but <tool_response> and <tools> are plain text.",
    plain_markers=("<tool_response>", "</tool_response>", "<tools>", "</tools>"),
))

# ---- Hermes ---------------------------------------------------------------------------------

_add("NousResearch-Hermes-3-Llama-3.1-8B-tool_use", Entry(
    "NousResearch/Hermes-3-Llama-3.1-8B", HERMES_SPEC, TemplateCaps(call_content=False, multi_system=True),
    ("<|im_end|>",) + LLAMA_STOPS,
    "unverified for the 8B: for Hermes-3-Llama-3.2-3B public code quotes config.json eos_token_id 128039 "
    "(<|im_end|>) and generation_config.json [128001, 128008, 128009]; the union is listed by analogy",
    _C["tools"], notes=HERMES_NOTES + " Token ids of the 8B's ChatML/tool tokens unverified.",
))
_add("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", Entry(
    "NousResearch/Hermes-2-Pro-Llama-3-8B", HERMES_SPEC, TemplateCaps(call_content=False, multi_system=True),
    ("<|im_end|>",),
    "unverified: the model card generates with eos_token_id=tokenizer.eos_token_id (<|im_end|>); "
    "generation_config.json not found quoted",
    _C["tools"], notes=HERMES_NOTES,
))

# ---- Mistral --------------------------------------------------------------------------------

_add("Mistral-Small-3.2-24B-Instruct-2506", Entry(
    "mistralai/Mistral-Small-3.2-24B-Instruct-2506", mistral_spec(MISTRAL_V11),
    TemplateCaps(call_content=False, call_id_length=9, multi_system=True),
    ("</s>",), MISTRAL_STOP_SOURCE, _C["small32"],
    notes="Tool-call ids must be 9 alphanumerics (raises otherwise); content beside calls is dropped; the tool list "
    "is written before the last user message only (history rewritten when a user turn follows); long default "
    "system prompt with today's date (strftime_now: renderings change from day to day); user/assistant "
    "alternation enforced. Token flags: all tekken control tokens special (unverified for [CALL_ID]/[ARGS]).",
))
_add("mistralai-Mistral-Nemo-Instruct-2407", Entry(
    "mistralai/Mistral-Nemo-Instruct-2407", mistral_spec(MISTRAL_BASE),
    TemplateCaps(call_content=False, call_id_length=9),
    ("</s>",), MISTRAL_STOP_SOURCE, _C["tools"],
    notes="Tool-call ids must be 9 alphanumerics; content beside calls dropped; the system prompt and the tool "
    "list are written into the last user message, and the system prompt only when that user message is the last "
    "message (absent from a full rendering that ends with an assistant turn); no generation prompt of its own; a later system message raises (not first -> 'Only user and assistant roles').",
))
_add("unsloth-mistral-Devstral-Small-2507", Entry(
    "unsloth/Devstral-Small-2507", mistral_spec(MISTRAL_V11), TemplateCaps(none_content=False, multi_system=True),
    ("</s>",), MISTRAL_STOP_SOURCE, _C["voxtral"], plain_markers=DEVSTRAL_PROSE,
    notes="Unsloth's edit of mistralai/Devstral-Small-2507's template: long default system prompt; tools listed "
    "once after the system prompt; calls written '[TOOL_CALLS]name[ARGS]{json}' without ids; content=None raises.",
))

# ---- NVIDIA ---------------------------------------------------------------------------------

_add("NVIDIA-Nemotron-Nano-v2", Entry(
    "nvidia/NVIDIA-Nemotron-Nano-9B-v2",
    TokenizerSpec(special_tokens=("<unk>", "<s>", "</s>", "<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>"),
                  bos_token="<s>", eos_token="<SPECIAL_12>", unk_token="<unk>"),
    TemplateCaps(),
    ("<SPECIAL_12>",),
    "tokenizer eos_token <SPECIAL_12> (NVIDIA Megatron-Bridge's Nemotron Nano v2 recipe: 'Correct eos token for "
    "Nemotron Nano v2'); generation_config.json unverified",
    _C["nemov2"],
    notes="A final assistant message is split: its text and its tool calls render as two assistant blocks, each "
    "closed by <SPECIAL_12>; earlier assistant content is cut after '</think>' and stripped; /think and /no_think "
    "in user/system text switch the generation prompt. <think>, <TOOLCALL> etc. assumed plain text (unverified).",
    plain_markers=("<think>", "</think>", "<TOOLCALL>", "</TOOLCALL>", "<AVAILABLE_TOOLS>", "</AVAILABLE_TOOLS>",
                   "<TOOL_RESPONSE>", "</TOOL_RESPONSE>"),
))
_add("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", Entry(
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", NEMOTRON3_SPEC,
    TemplateCaps(reasoning=True, multi_system=True), ("<|im_end|>",),
    "unverified: tokenizer EOS <|im_end|>; generation_config.json not found quoted", _C["jinja"],
    notes="Token flags copied from sftdata.testing.trl_templates' nemotron spec (unverified); <function=...> and "
    "<parameter=...> plain. Reasoning of assistant turns before the last user turn is dropped "
    "(truncate_history_thinking); every assistant turn gets a '<think></think>' prefix when it has no reasoning. "
    "llama.cpp's first copy (c05aa69f) had CRLF line endings; this LF copy renders identically.",
    plain_markers=("<enum>", "</enum>", "<required>", "</required>") + XML_TOOLS,
))

# ---- DeepSeek -------------------------------------------------------------------------------

_add("deepseek-ai-DeepSeek-V3.1", Entry(
    "deepseek-ai/DeepSeek-V3.1",
    TokenizerSpec(special_tokens=(DS_BOS, DS_EOS), added_tokens=("<｜User｜>", "<｜Assistant｜>") + THINK_TAGS + DS_TOOL,
                  bos_token=DS_BOS, eos_token=DS_EOS, add_bos=True),
    TemplateCaps(none_content=False, string_arguments=True), (DS_EOS,),
    "unverified: tokenizer EOS <｜end▁of▁sentence｜> (id 1); generation_config.json not found quoted", _C["dsv31"],
    notes="Arguments are concatenated as strings (a dict raises TypeError): served with JSON-text arguments. "
    "Non-thinking mode by default (thinking=False): '</think>' opens every answer; reasoning never rendered; all "
    "system messages are moved to the top. Token flags (User/Assistant/think/tool tokens non-special, as in the "
    "R1-Distill tokenizer) unverified for V3.1.",
    edited_by=f"{_C['autoparser']}, {_C['prefill']} (reformats, adds enable_thinking, tojson on arguments, "
    "'<think></think>')",
))
_add("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", Entry(
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    TokenizerSpec(
        special_tokens=(DS_EOS, DS_BOS, "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
                        "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"),
        added_tokens=("<｜User｜>", "<｜Assistant｜>", "<|EOT|>") + THINK_TAGS + ("<tool_call>", "</tool_call>"),
        bos_token=DS_BOS, eos_token=DS_EOS, pad_token=DS_EOS, add_bos=True,
    ),
    TemplateCaps(tools=False, parallel_calls=False, call_content=False, none_content=False), (DS_EOS,),
    "generation_config.json bos 151646, eos_token_id 151643 = <｜end▁of▁sentence｜> (quoted in public code)",
    _C["r1qwen"],
    notes="Tokenizer as quoted publicly for the R1-Distill-Qwen tokenizer_config.json (add_bos_token true; "
    "<｜User｜>/<｜Assistant｜>/<think> non-special). DeepSeek's tool tokens are NOT in this vocabulary (plain "
    "text). Tools unusable: a message with tool calls renders only when content is None, and then the call is "
    "written with arguments concatenated as a string; ns.is_first never resets. Content up to '</think>' is cut.",
    plain_markers=DS_TOOL,
    edited_by=f"{_C['autoparser']}, {_C['prefill']} (reformats, tool calls with content, tojson, enable_thinking)",
))

# ---- OpenAI, Swiss AI, Zhipu, MiniMax, Moonshot ------------------------------------------------

_add("openai-gpt-oss-120b", Entry(
    "openai/gpt-oss-120b", GPTOSS_SPEC,
    TemplateCaps(reasoning=True, parallel_calls=False, call_content=False, reasoning_field="thinking"),
    ("<|return|>", "<|endoftext|>", "<|call|>"),
    "generation_config.json eos_token_id [200002, 199999, 200012] = <|return|>, <|endoftext|>, <|call|> (quoted "
    "in public code; the AWS Bedrock guide notes the third id was added on 2025-08-13)", _C["harmony"],
    notes="Harmony. Reasoning read from 'thinking'; rendered for a tool-calling turn only if no final answer follows, "
    "and for the last assistant turn only without a generation prompt (history rewritten). <|end|> closes the "
    "analysis message, generation stops at <|call|> or <|return|>; the last turn ends with <|return|>, earlier ones "
    "with <|end|>. Only the first call of a message is rendered; content beside calls becomes the analysis message "
    "and raises together with thinking; tool results JSON-quoted; today's date via strftime_now; a later system "
    "message is dropped.",
))
_add("Apertus-8B-Instruct", Entry(
    "swiss-ai/Apertus-8B-Instruct-2509",
    TokenizerSpec(
        special_tokens=("<unk>", "<s>", "</s>", "<pad>", "<|system_start|>", "<|system_end|>", "<|developer_start|>",
                        "<|developer_end|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>",
                        "<|assistant_end|>", "<|inner_prefix|>", "<|inner_suffix|>", "<|tools_prefix|>",
                        "<|tools_suffix|>"),
        bos_token="<s>", eos_token="<|assistant_end|>", pad_token="<pad>", unk_token="<unk>",
    ),
    TemplateCaps(string_arguments=True, flat_tool_schemas=True), ("<|assistant_end|>",),
    "tokenizer eos_token <|assistant_end|> (id 68; quoted by public Apertus SFT logs); generation_config.json "
    "unverified", _C["apertus"],
    notes="One <|assistant_start|> header spans every assistant and tool message up to the next user message "
    "(tool results are written inside the assistant block, in [...]); <|assistant_end|> is written only when a user "
    "message follows. Arguments concatenated as strings, tool schemas read as bare function objects. Reasoning "
    "only via structured content blocks (not reasoning_content). Default system prompt has today's date. Role "
    "tokens ids 61-72 (public Apertus SFT code); <s>/<pad>/<unk> and add_bos unverified.",
    edited_by=f"{_C['autoparser']} (reads tool.function.*, tojson on arguments)",
))
_add("GLM-4.6", Entry(
    "zai-org/GLM-4.6", GLM_SPEC, TemplateCaps(reasoning=True, multi_system=True), GLM_STOPS,
    "config eos_token_id [151329, 151336, 151338] = <|endoftext|>, <|user|>, <|observation|> (quoted in public "
    "code for the GLM-4.5/4.6 MoE config)", _C["xml"],
    notes="Starts with '[gMASK]<sop>'. Reasoning only after the last user turn; a turn is closed by the next role "
    "token, not by an end token (generation stops on <|user|> or <|observation|>). Tool calls as "
    "<arg_key>/<arg_value> pairs (arguments must be a mapping). " + GLM_NOTES_TOKENS,
    plain_markers=("<tools>", "</tools>"),
))
_add("GLM-4.7-Flash", Entry(
    "zai-org/GLM-4.7-Flash", GLM_SPEC, TemplateCaps(reasoning=True, multi_system=True), GLM_STOPS,
    "unverified for 4.7-Flash: assumed GLM-4.6's eos_token_id [151329, 151336, 151338]", _C["autoparser"],
    notes="As GLM-4.6 without newlines around tags; history turns get '</think>' alone; clear_thinking=False keeps "
    "old reasoning. Added to llama.cpp in its autoparser commit (no earlier copy to compare). " + GLM_NOTES_TOKENS,
    plain_markers=("<tools>", "</tools>"),
))
_add("MiniMax-M2", Entry(
    "MiniMaxAI/MiniMax-M2",
    TokenizerSpec(special_tokens=("]~!b[", "]~b]", "[e~[", "]!p~[", "<think>", "</think>"),
                  added_tokens=("<minimax:tool_call>", "</minimax:tool_call>"),
                  bos_token="]~!b[", eos_token="[e~[", pad_token="]!p~["),
    TemplateCaps(reasoning=True, multi_system=True), ("[e~[",),
    "generation_config.json eos_token_id 200020 = [e~[ (quoted in public code for MiniMax M2.x)", _C["xml"],
    notes="Reasoning only after the last user turn. Tool calls as <invoke>/<parameter> XML (plain text). "
    "bos ]~!b[, role marker ]~b], eos [e~[ and special <think> from a public test fixture; <minimax:tool_call> "
    "token status and the pad token unverified.",
    plain_markers=("<invoke name=", "</invoke>", "<parameter name=", "</parameter>", "<response>", "</response>",
                   "<tools>", "</tools>", "<tool>", "</tool>"),
))
_add("moonshotai-Kimi-K2", Entry(
    "moonshotai/Kimi-K2-Instruct", KIMI_SPEC, TemplateCaps(multi_system=True), ("<|im_end|>",), KIMI_STOP_SOURCE,
    _C["autoparser"],
    plain_markers=("<|media_start|>",),
    notes=KIMI_NOTES + " Call ids are rewritten as functions.<name>:<index in message>; no reasoning. llama.cpp's "
    "first copy (4a4f4269) had CRLF line endings; this LF copy renders identically.",
))
_add("Kimi-K2-Thinking", Entry(
    "moonshotai/Kimi-K2-Thinking", KIMI_SPEC,
    TemplateCaps(tools=False, parallel_calls=False, call_content=False, none_content=False, multi_system=True),
    ("<|im_end|>",),
    KIMI_STOP_SOURCE, _C["xml"], plain_markers=("<|media_start|>",),
    notes=KIMI_NOTES + " Tool calls cannot render under transformers: the template calls list.append, which "
    "transformers' ImmutableSandboxedEnvironment refuses (SecurityError), hence tools=False. reasoning_content is "
    "rendered only for messages after the first assistant message without calls (the 'last' index is searched "
    "backwards without a break), so a one-turn conversation loses it: reasoning=False.",
    edited_by=f"{_C['kimifix']} (ignores tool_call.id, counter from 0)",
))

# ---- Meta, Google, Microsoft, IBM, ByteDance, Cohere, StepFun --------------------------------

_add("meta-llama-Llama-3.1-8B-Instruct", Entry(
    "meta-llama/Llama-3.1-8B-Instruct", LLAMA3_SPEC,
    TemplateCaps(parallel_calls=False, call_content=False, multi_system=True), LLAMA_STOPS, LLAMA_STOP_SOURCE,
    _C["tools"],
    notes="One tool call per message (raises otherwise); content beside calls dropped; tools go into the first user "
    "message by default (tools_in_user_message); tool results written with tojson when not a string; every content "
    "trimmed; 'Environment: ipython' header with tools; builtin_tools write <|python_tag|>/<|eom_id|>.",
))
_add("meta-llama-Llama-3.2-3B-Instruct", Entry(
    "meta-llama/Llama-3.2-3B-Instruct", LLAMA3_SPEC,
    TemplateCaps(parallel_calls=False, call_content=False, multi_system=True), LLAMA_STOPS, LLAMA_STOP_SOURCE,
    _C["tools"],
    notes="As Llama 3.1 (single call, content beside calls dropped, tools in the first user message); today's date "
    "via strftime_now unless date_string is passed (template_kwargs pins it).",
    template_kwargs={"date_string": "26 Jul 2024"},
))
_add("google-gemma-2-2b-it", Entry(
    "google/gemma-2-2b-it", GEMMA_SPEC,
    TemplateCaps(system=False, tools=False, parallel_calls=False, call_content=False, none_content=False,
                 alternating=True),
    ("<eos>", "<end_of_turn>"),
    "config.json eos_token_id [1, 107] = <eos>, <end_of_turn> (quoted in public code for the 2304-wide Gemma 2); "
    "generation_config.json assumed the same (unverified)", _C["tools"],
    notes="No system role (raises), strict user/model alternation, no tools; content trimmed.",
))
_add("microsoft-Phi-3.5-mini-instruct", Entry(
    "microsoft/Phi-3.5-mini-instruct", PHI3_SPEC,
    TemplateCaps(tools=False, parallel_calls=False, call_content=False, none_content=False, multi_system=True),
    ("<|end|>", "<|assistant|>", "<|endoftext|>"),
    "generation_config.json eos_token_id [32007, 32001, 32000] = <|end|>, <|assistant|>, <|endoftext|> (quoted in "
    "public code pinned to microsoft/Phi-3.5-mini-instruct)", _C["tools"],
    notes="No tools; eos_token appended when add_generation_prompt is false; role tokens rstrip whitespace like the "
    "real Phi-3 tokenizer, so decode(encode(text)) != text (spec marked lossy).",
))
_add("ibm-granite-granite-3.3-2B-Instruct", Entry(
    "ibm-granite/granite-3.3-2b-instruct",
    TokenizerSpec(special_tokens=("<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>", "<|tool_call|>",
                                  "<|start_of_cite|>", "<|end_of_cite|>", "<|start_of_plugin|>", "<|end_of_plugin|>"),
                  bos_token="<|end_of_text|>", eos_token="<|end_of_text|>", pad_token="<|end_of_text|>"),
    TemplateCaps(tools=False, parallel_calls=False, call_content=False, none_content=False, multi_system=True),
    ("<|end_of_text|>",),
    "unverified: tokenizer EOS <|end_of_text|> (id 0); generation_config.json not found quoted", _C["granite"],
    notes="Long default system prompt with today's date (strftime_now); tool schemas go into the system prompt but "
    "assistant tool_calls are silently dropped (only message['content'] is written; the model writes calls as "
    "'<|tool_call|>[...]' text), hence tools=False; reasoning not rendered (thinking=True only changes the system prompt); <think>/<response> plain text. "
    "Token list and flags unverified.",
    plain_markers=("<think>", "</think>", "<response>", "</response>"),
))
_add("ByteDance-Seed-OSS", Entry(
    "ByteDance-Seed/Seed-OSS-36B-Instruct",
    TokenizerSpec(special_tokens=("<seed:bos>", "<seed:eos>", "<seed:pad>", "<seed:think>", "</seed:think>",
                                  "<seed:tool_call>", "</seed:tool_call>", "<seed:cot_budget_reflect>",
                                  "</seed:cot_budget_reflect>"),
                  bos_token="<seed:bos>", eos_token="<seed:eos>", pad_token="<seed:pad>"),
    TemplateCaps(reasoning=True, multi_system=True), ("<seed:eos>",),
    "tokenizer eos_token <seed:eos> (llama.cpp's chat-template test uses bos <seed:bos>, eos <seed:eos>); "
    "generation_config.json unverified", _C["seed"],
    notes="Every turn is '<seed:bos>role\\n...<seed:eos>' (bos/eos written through the template variables). "
    "Reasoning kept only after the last user turn; a thinking_budget kwarg adds budget reflections. Token flags "
    "(all special) unverified; <function=...>/<parameter=...> plain.",
    plain_markers=("<function=", "</function>", "<parameter=", "</parameter>"),
))
_add("CohereForAI-c4ai-command-r7b-12-2024-tool_use", Entry(
    "CohereForAI/c4ai-command-r7b-12-2024", COHERE_R7B_SPEC,
    TemplateCaps(call_content=False, none_content=True), ("<|END_OF_TURN_TOKEN|>",),
    "unverified: generation_config.json not found quoted; the Cohere tokenizer_config.json's eos_token is "
    "<|END_OF_TURN_TOKEN|> (bos <BOS_TOKEN>, add_bos_token true; quoted in public code)", _C["r7b"],
    notes="Always ends with '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>', with or without add_generation_prompt. "
    "Content beside calls dropped; the thinking slot reads message.tool_plan (not reasoning_content: empty here); "
    "call ids replaced by running integers; consecutive tool results grouped into one turn. Tokens beyond the "
    "Cohere base set unverified; <co> citation tags plain.",
    plain_markers=("<co>", "</co>"),
    edited_by=f"{_C['autoparser']} (tool_plan -> reasoning_content, enable_thinking)",
))
_add("StepFun3.5-Flash", Entry(
    "stepfun-ai/Step-3.5-Flash",
    TokenizerSpec(special_tokens=("<s>", "</s>", "<|im_start|>", "<|im_end|>"), added_tokens=TOOL_TAGS + THINK_TAGS,
                  bos_token="<s>", eos_token="<|im_end|>"),
    TemplateCaps(reasoning=True, multi_system=True), ("<|im_end|>",),
    "unverified: Step-3.5-Flash's tokenizer_config.json / generation_config.json not found quoted; <|im_end|> is "
    "the template's end of turn", _C["autoparser"],
    notes="Qwen3-style ChatML with {{bos_token}} first, XML tool calls and reasoning after the last user turn. The "
    "whole tokenizer spec is unverified (bos '<s>' is a placeholder). Byte-identical to llama.cpp's "
    "stepfun-ai-Step-3.5-Flash.jinja.",
    plain_markers=XML_TOOLS + ("<im_patch>",),
))
