"""Token groups, tokenizer layouts, stop tokens and their sources for the real models whose
chat templates are vendored (:mod:`sftdata.testing.real_templates`); the facts' provenance is
the one described in :mod:`sftdata.testing._real_specs` and ``templates/real/README.md``.

Names ending ``_SPEC`` are :class:`~sftdata.testing.tokenizers.TokenizerSpec` s, ``_STOPS``
stop-token strings, ``_STOP_SOURCE`` / ``_NOTES`` the quoted evidence.
"""

from __future__ import annotations

from .tokenizers import LLAMA3_SPEC, THINK_TAGS, TOOL_TAGS, TokenizerSpec

XML_TOOLS = (  # Qwen3-Coder-style tool prompt and calls: plain text in every vocabulary here
    "<tools>", "</tools>", "<function>", "</function>", "<name>", "</name>", "<description>", "</description>",
    "<parameters>", "</parameters>", "<parameter>", "</parameter>", "<type>", "</type>", "<IMPORTANT>",
    "</IMPORTANT>", "<function=", "<parameter=",
)
DEVSTRAL_PROSE = tuple(  # section tags of Devstral's default system prompt (plain text)
    f"<{c}{t}>" for t in ("ROLE", "EFFICIENCY", "FILE_SYSTEM_GUIDELINES", "CODE_QUALITY", "VERSION_CONTROL",
                          "PULL_REQUESTS", "PROBLEM_SOLVING_WORKFLOW", "SECURITY", "ENVIRONMENT_SETUP",
                          "TROUBLESHOOTING") for c in ("", "/")
)
QWEN_STOPS = ("<|im_end|>", "<|endoftext|>")
QWEN_STOP_SOURCE = (
    "generation_config.json eos_token_id [151645, 151643] = <|im_end|>, <|endoftext|> (quoted in public code "
    "with Qwen3's sampling defaults)"
)
LLAMA_STOPS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")
LLAMA_STOP_SOURCE = (
    "generation_config.json eos_token_id [128001, 128008, 128009] = <|end_of_text|>, <|eom_id|>, <|eot_id|> "
    "(quoted in public code for meta-llama/Llama-3.1-8B-Instruct and the tied-embedding 3.2 models)"
)
HERMES_SPEC = TokenizerSpec(  # Llama 3 vocabulary, ChatML tokens in reserved slots, Hermes tool tags
    special_tokens=LLAMA3_SPEC.special_tokens + ("<|im_start|>", "<|im_end|>"),
    added_tokens=("<tools>", "</tools>") + TOOL_TAGS,
    bos_token="<|begin_of_text|>",
    eos_token="<|im_end|>",
    add_bos=True,
)
HERMES_NOTES = (
    "ChatML on Llama 3. Per the Hermes-2-Pro-Llama-3-8B model card <tools>, <tool_call>, <tool_response> and "
    "their closing tags are single tokens (special flag unverified: non-special here). Content beside tool calls is "
    "dropped; reasoning dropped; tool schemas rendered as Python-style signatures; tool results wrapped in "
    "<tool_response> inside a 'tool' ChatML turn; raises TypeError without a tools list (the tool_use variant). Same "
    "file as the Hermes-2-Pro tool_use template."
)
MISTRAL_BASE = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                 "[TOOL_RESULTS]", "[/TOOL_RESULTS]")
MISTRAL_V11 = MISTRAL_BASE + ("[IMG]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]", "[CALL_ID]", "[ARGS]")


def mistral_spec(specials: tuple[str, ...]) -> TokenizerSpec:
    """A Mistral tokenizer layout with ``specials`` (``<s>`` BOS added, ``</s>`` EOS, ``<unk>``)."""
    return TokenizerSpec(special_tokens=specials, bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos=True)


MISTRAL_STOP_SOURCE = (
    "unverified: generation_config.json not found quoted; </s> (id 2) is the EOS of Mistral's tekken tokenizers"
)
DS_TOOL = ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
            "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
            "<｜tool▁sep｜>")
DS_BOS, DS_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
KIMI_SPECIAL = (
    "[BOS]", "[EOS]", "<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|start_header_id|>", "<|end_header_id|>",
    "[EOT]", "<|im_system|>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>", "<|tool_call_end|>", "<|im_middle|>", "<|media_begin|>", "<|media_content|>",
    "<|media_end|>", "<|media_pad|>", "<think>", "</think>", "[UNK]", "[PAD]",
)
KIMI_SPEC = TokenizerSpec(special_tokens=KIMI_SPECIAL, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]",
                           unk_token="[UNK]")
KIMI_STOP_SOURCE = (
    "config.json eos_token_id 163586 = <|im_end|> (quoted in public code for kimi_k2 configs, with Kimi's "
    "special-token table); generation_config.json assumed to carry the same id (unverified)"
)
KIMI_NOTES = (
    "Special tokens and ids from public copies of Kimi's tiktoken table (all special); the tokenizer's own "
    "bos/eos are [BOS]/[EOS], generation stops on <|im_end|>. <|media_start|> (multimodal branch only) is not a "
    "token of the real vocabulary (it has <|media_begin|>). Tool results render as '## Return of <id>'."
)
GLM_STOPS = ("<|endoftext|>", "<|user|>", "<|observation|>")
GLM_NOTES_TOKENS = (
    "Token flags copied from sftdata.testing.trl_templates' glm4moe spec (role tokens special, tool/think/arg tags "
    "non-special: unverified); <tools> is plain text."
)
NEMOTRON3_SPEC = TokenizerSpec(
    special_tokens=("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"),
    added_tokens=TOOL_TAGS + THINK_TAGS,
    bos_token="<s>",
    eos_token="<|im_end|>",
    unk_token="<unk>",
)
COHERE_R7B_SPEC = TokenizerSpec(
    special_tokens=(
        "<PAD>", "<UNK>", "<BOS_TOKEN>", "<EOS_TOKEN>", "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
        "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>", "<|START_RESPONSE|>", "<|END_RESPONSE|>",
        "<|START_THINKING|>", "<|END_THINKING|>", "<|START_ACTION|>", "<|END_ACTION|>", "<|START_TOOL_RESULT|>",
        "<|END_TOOL_RESULT|>",
    ),
    bos_token="<BOS_TOKEN>",
    eos_token="<|END_OF_TURN_TOKEN|>",
    pad_token="<PAD>",
    unk_token="<UNK>",
    add_bos=True,
)
