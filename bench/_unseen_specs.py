"""The unseen templates of ``bench/unseen_templates.py``: :data:`SPECS` (one :class:`Spec` per
template in ``bench/unseen_templates/``: model, offline tokenizer, capabilities, guessed stop
tokens and where the guess comes from) and the template text and tokenizer of each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sftdata.testing.tokenizers import LLAMA3_SPEC, QWEN3_SPEC, TemplateCaps, TokenizerSpec

HERE = Path(__file__).resolve().parent / "unseen_templates"

_CHATML = ("<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class Spec:
    """One unseen template: where it came from and what its offline tokenizer holds."""

    model: str
    spec: TokenizerSpec = field(repr=False)
    caps: TemplateCaps
    stop_tokens: tuple[str, ...]
    stop_source: str
    template_kwargs: dict = field(default_factory=dict)
    notes: str = ""
    draw: dict = field(default_factory=dict)  # extra conversations_for keywords (e.g. no empty content)


_DS_BOS, _DS_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"

#: token lists are read off each template's text (every control string it writes); flags (special
#: or not), bos/eos and stop tokens are guesses unless said otherwise: none was checked against the
#: model's tokenizer_config.json / generation_config.json (the Hub is unreachable here).
SPECS: dict[str, Spec] = {
    "Qwen3.5-4B": Spec(
        "Qwen/Qwen3.5-4B", QWEN3_SPEC, TemplateCaps(reasoning=True, multi_system=True),
        ("<|im_end|>", "<|endoftext|>"), "guess: the Qwen3 family's eos ids (<|im_end|>, <|endoftext|>)",
        notes="Qwen3-style ChatML; XML tool calls (<function=..><parameter=..>); reasoning after the last user query.",
    ),
    "HuggingFaceTB-SmolLM3-3B": Spec(
        "HuggingFaceTB/SmolLM3-3B",
        TokenizerSpec(special_tokens=("<|begin_of_text|>", "<|end_of_text|>") + _CHATML, added_tokens=("<think>", "</think>"),
                      eos_token="<|im_end|>"),
        TemplateCaps(tools=False, reasoning=False, none_content=False, multi_system=False),
        ("<|im_end|>",), "guess: the template's end of turn <|im_end|>",
        notes="Tool calls are not rendered (content only); tool results become user turns; reasoning fields ignored; "
        "'/think' mode default (enable_thinking undefined -> true): history turns have no think block.",
    ),
    "LFM2.5-Instruct": Spec(
        "LiquidAI/LFM2.5-1.2B-Instruct",
        TokenizerSpec(special_tokens=("<|startoftext|>", "<|endoftext|>") + _CHATML, added_tokens=("<think>", "</think>"),
                      bos_token="<|startoftext|>", eos_token="<|im_end|>"),
        TemplateCaps(tools=False, none_content=False, multi_system=False),
        ("<|im_end|>",), "guess: the template's end of turn <|im_end|>",
        notes="ChatML, tool list in the system prompt, tool calls not rendered from tool_calls (content only); "
        "'</think>' content of earlier assistant turns cut (keep_past_thinking=False).",
    ),
    "MiMo-VL": Spec(
        "XiaomiMiMo/MiMo-VL-7B-RL", QWEN3_SPEC, TemplateCaps(multi_system=True),
        ("<|im_end|>", "<|endoftext|>"), "guess: Qwen2.5-VL base eos (<|im_end|>, <|endoftext|>)",
        notes="Qwen2.5-style ChatML with Hermes tool calls; no reasoning field.",
    ),
    "Bielik-11B-v3.0-Instruct": Spec(
        "speakleash/Bielik-11B-v3.0-Instruct",
        TokenizerSpec(special_tokens=("<unk>", "<s>", "</s>") + _CHATML,
                      added_tokens=("<think>", "</think>", "<tool_call>", "</tool_call>", "<|function_list|>", "<|function_output|>"),
                      bos_token="<s>", eos_token="<|im_end|>", unk_token="<unk>"),
        TemplateCaps(reasoning=True, multi_system=True),
        ("<|im_end|>",), "guess: the template's end of turn <|im_end|>",
        notes="ChatML; reasoning_content rendered as <think> in every assistant turn.",
    ),
    "google-gemma-4-31B-it": Spec(
        "google/gemma-4-31B-it",
        TokenizerSpec(special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<|turn>", "<turn|>", "<|channel>", "<channel|>",
                                      "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", "<|tool>", "<tool|>",
                                      "<|think|>", "<|image|>", "<|audio|>", "<|video|>", '<|"|>'),
                      bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>", add_bos=True),
        TemplateCaps(reasoning=True, multi_system=False),
        ("<turn|>", "<|tool_response>", "<eos>"),
        "guess: the template's end of turn <turn|>; a turn ending in tool calls is closed by <|tool_response> instead; plus <eos>",
        notes="Gemma 4: <|turn>role ... <turn|>; reasoning as a thought channel only beside tool calls after the last "
        "user turn; tool calls/responses in Gemma's own syntax.",
    ),
    "ibm-granite-granite-4.0": Spec(
        "ibm-granite/granite-4.0-h-small",
        TokenizerSpec(special_tokens=("<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>"),
                      added_tokens=("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"),
                      bos_token="<|end_of_text|>", eos_token="<|end_of_text|>", pad_token="<|end_of_text|>"),
        TemplateCaps(multi_system=False),
        ("<|end_of_text|>",), "guess: the template's end of turn <|end_of_text|>",
        notes="Granite 4.0 (added to llama.cpp by IBM); default system prompt; Hermes-like tool calls.",
    ),
    "deepseek-ai-DeepSeek-V3.2": Spec(
        "deepseek-ai/DeepSeek-V3.2",
        TokenizerSpec(special_tokens=(_DS_BOS, _DS_EOS), added_tokens=("<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"),
                      bos_token=_DS_BOS, eos_token=_DS_EOS, add_bos=True),
        TemplateCaps(reasoning=True, none_content=True, multi_system=True),
        (_DS_EOS,), "guess: DeepSeek's EOS <｜end▁of▁sentence｜>",
        notes="llama.cpp's 'official' V3.2 template (V3.2 ships a Python encoder, no Jinja); DSML tool calls; the "
        "assistant header '<｜Assistant｜></think>' is written by the *user* message; reasoning after the last user.",
    ),
    "mistralai-Ministral-3-14B-Reasoning-2512": Spec(
        "mistralai/Ministral-3-14B-Reasoning-2512",
        TokenizerSpec(special_tokens=("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]",
                                      "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[IMG]", "[SYSTEM_PROMPT]",
                                      "[/SYSTEM_PROMPT]", "[ARGS]", "[THINK]", "[/THINK]"),
                      bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos=True),
        TemplateCaps(multi_system=True, call_content=True),
        ("</s>",), "guess: Mistral's EOS </s>",
        notes="Reasoning only as 'thinking' content blocks (not a message field): reasoning=False; long default system "
        "prompt; an assistant message with empty content and no calls raises (drawn without empty content).",
        draw={"empty_content": False},
    ),
    "upstage-Solar-Open-100B": Spec(
        "upstage/Solar-Open-100B",
        TokenizerSpec(special_tokens=("<s>", "</s>", "<|begin|>", "<|end|>", "<|think|>", "<|content|>", "<|tool_calls|>",
                                      "<|calls|>", "<|tool_response|>", "<|tools:begin|>", "<|tools:end|>", "<|tool:begin|>",
                                      "<|tool:end|>", "<|tool_call:begin|>", "<|tool_call:name|>", "<|tool_call:args|>",
                                      "<|tool_call:end|>", "<|tool_response:begin|>", "<|tool_response:id|>",
                                      "<|tool_response:name|>", "<|tool_response:result|>", "<|tool_response:end|>", "<|flush|>"),
                      bos_token="<s>", eos_token="</s>"),
        TemplateCaps(reasoning=True, multi_system=True),
        ("<|flush|>", "<|calls|>"),
        "guess from llama.cpp's Solar parser (common/chat.cpp at 7b7ae857): the model writes '<|think|>R<|end|><|begin|>assistant"
        "<|content|>C' in one generation (so <|end|> is not a stop) and ends with <|flush|>, which the prompt rewrites as "
        "<|end|>; tool-call blocks end with <|calls|>",
        notes="Harmony-like: an assistant message is written as two blocks, '<|begin|>assistant<|think|>R<|end|>' (reasoning, "
        "after the last user turn only) then '<|begin|>assistant<|content|>C<|end|>' or '<|begin|>assistant<|tool_calls|>"
        "...<|calls|>'; the generation prompt is '<|begin|>assistant'. Reads message.reasoning; date via strftime_now. "
        "The template never writes <|flush|>: an answer turn renders with no stop token (history form).",
    ),
    "Apriel-1.6-15b-Thinker-fixed": Spec(
        "ServiceNow-AI/Apriel-1.6-15b-Thinker",
        TokenizerSpec(special_tokens=("<unk>", "<s>", "</s>", "[IMG]", "<|begin_system|>", "<|begin_user|>", "<|begin_assistant|>",
                                      "<|begin_tool_result|>", "<|begin_content|>", "<|end|>"),
                      bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
        TemplateCaps(reasoning=False, multi_system=True),
        ("<|end|>", "</s>"), "guess: the template's end of turn <|end|>, plus </s>",
        notes="add_generation_prompt forced true (always ends with the generation prompt); the last assistant message "
        "gets no <|end|>; llama.cpp's 'fixed' copy of the Hub template.",
    ),
    "GigaChat3-10B-A1.8B": Spec(
        "ai-sage/GigaChat3-10B-A1.8B",
        TokenizerSpec(special_tokens=("<s>", "</s>", "<|role_sep|>", "<|message_sep|>"), bos_token="<s>", eos_token="</s>"),
        TemplateCaps(parallel_calls=False, multi_system=False),
        ("</s>",), "guess: the tokenizer EOS </s>; NOT <|message_sep|>: llama.cpp's GigaChat V3 parser (common/chat.cpp at "
        "a8304b4d) reads a tool call the model writes after '<|message_sep|>\\n\\nfunction call<|role_sep|>\\n', so "
        "generation goes on past <|message_sep|>",
        notes="Role names as plain text before <|role_sep|>; one function call per message (only tool_calls[0] rendered).",
    ),
    "meetkai-functionary-medium-v3.2": Spec(
        "meetkai/functionary-medium-v3.2", LLAMA3_SPEC, TemplateCaps(multi_system=True),
        ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"), "guess: Llama 3's eos ids",
        notes="Llama 3 headers; calls written '>>>name\\n{args}'; content '>>>all\\n...'.",
    ),
    "CohereForAI-c4ai-command-r-plus-tool_use": Spec(
        "CohereForAI/c4ai-command-r-plus",
        TokenizerSpec(special_tokens=("<PAD>", "<UNK>", "<BOS_TOKEN>", "<EOS_TOKEN>", "<|START_OF_TURN_TOKEN|>",
                                      "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>"),
                      bos_token="<BOS_TOKEN>", eos_token="<|END_OF_TURN_TOKEN|>", pad_token="<PAD>", unk_token="<UNK>", add_bos=True),
        TemplateCaps(call_content=False, multi_system=False),
        ("<|END_OF_TURN_TOKEN|>",), "guess: the template's end of turn <|END_OF_TURN_TOKEN|>",
        notes="Command R+ tool_use template: tool calls as 'Action: ```json [...]```'.",
    ),
}


def template_text(name: str) -> str:
    """The Jinja source of the unseen template ``name`` (a :data:`SPECS` key); ``FileNotFoundError`` if absent."""
    return (HERE / f"{name}.jinja").read_text(encoding="utf-8")


def tokenizer_for(name: str):
    """An offline tokenizer for ``name``: the shared small test BPE with :data:`SPECS` ``[name].spec``'s
    tokens and the template as its ``chat_template``."""
    from sftdata.testing.tokenizers import make_tokenizer

    return make_tokenizer(SPECS[name].spec, template_text(name), name_or_path=f"unseen-template/{name}")
