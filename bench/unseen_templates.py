#!/usr/bin/env python
"""sftdata's masks on real chat templates the test suite has never seen, checked by the oracle.

The templates in ``bench/unseen_templates/`` (provenance in its README.md) are NOT vendored in
``sftdata/testing/templates/real``: nothing in the test suite was tuned to them. For each one an
offline tokenizer is built like :func:`sftdata.testing.real_templates.real_template_tokenizer`
does it (the shared small test BPE + the template's control tokens as added tokens, see
:data:`SPECS`; stop tokens guessed from the template's end-of-turn markers, their source in
``stop_source``), and sftdata's :class:`~sftdata.Encoder` (policies ``exact`` and ``last``) runs
over

* ``gen``: conversations drawn from :func:`sftdata.testing.strategies.conversations_for` with the
  template's :class:`~sftdata.testing.tokenizers.TemplateCaps` (seeded, ``--examples`` per template);
* ``tau``: tau-bench airline trajectories (``../shared/data/tau-bench``) with the derived tool schemas;
* ``rtu``: LLaMA-Factory's ``reason_tool_use_demo_50.jsonl`` (reasoning parts, parallel calls).

Every written row is checked with :func:`sftdata.testing.oracle.check_rows` (transformers'
``apply_chat_template`` alone), every refusal with :func:`sftdata.testing.oracle.justified_refusal`.
Printed per template x data x policy: rows, written, rejected by reason, unjustified refusals,
oracle failures, other exceptions, two checks the oracle does not make (``>stop``: a trained run
holds a stop token before its end; ``dup``: a trained run starts with the control token its
prompt ends with, e.g. '</think>' trained after a prompt ending '<think></think>'), how the oracle
matched the trained turns (``prefix`` = the path is exactly tokens(P_k) + the turn; ``mism`` =
prompt_mismatch and ``rewr`` = history_rewritten, both accepted by the oracle with weaker checks),
and the first failure's message.

Usage::

    python bench/unseen_templates.py                      # every template, gen + real traces
    python bench/unseen_templates.py --only Qwen3.5 --examples 50 --data gen
    python bench/unseen_templates.py --show-failures 3    # print failing conversations

Read-only on ../shared/data (skipped when absent). No network. Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HERE = ROOT / "bench" / "unseen_templates"
SHARED = ROOT.parent / "shared" / "data"

from sftdata.testing.tokenizers import LLAMA3_SPEC, QWEN3_SPEC, TemplateCaps, TokenizerSpec  # noqa: E402

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
    return (HERE / f"{name}.jinja").read_text(encoding="utf-8")


def tokenizer_for(name: str):
    from sftdata.testing.tokenizers import make_tokenizer

    return make_tokenizer(SPECS[name].spec, template_text(name), name_or_path=f"unseen-template/{name}")


def served(conv, caps):
    """``conv`` as the test suite serves it to a template with ``caps`` (JSON-text arguments, flat schemas)."""
    from sftdata.schema import Conversation

    if caps.string_arguments and conv.has_tool_calls:
        msgs = tuple(replace(m, tool_calls=tuple(replace(c, arguments_text=json.dumps(dict(c.arguments), ensure_ascii=False))
                                                 for c in m.tool_calls)) for m in conv.messages)
        conv = Conversation(msgs, conv.tools)
    if caps.flat_tool_schemas and conv.tools:
        conv = Conversation(conv.messages, tuple(t["function"] if isinstance(t.get("function"), dict) else t for t in conv.tools))
    return conv


def generated(caps, n: int, seed: int, **draw) -> list:
    """``n`` conversations drawn (seeded) from ``conversations_for(caps, ends_with="assistant", **draw)``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from sftdata.testing.strategies import conversations_for

    out: list = []

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(conversations_for(caps, **{"ends_with": "assistant", "max_turns": 3, **draw}))
    def collect(conv):
        out.append(conv)

    collect()
    return out


def real_traces(rows: int | None) -> dict[str, list]:
    """Conversations of the real traces (normalised by sftdata; rows it cannot normalise are skipped and counted)."""
    from sftdata.errors import RowError
    from sftdata.formats.normalize import normalize

    out: dict[str, list] = {}
    tau, tools = SHARED / "tau-bench" / "gpt-4o-airline.json", SHARED / "tau-bench" / "airline_tools.DERIVED.json"
    raw: dict[str, list] = {}
    if tau.is_file() and tools.is_file():
        schemas = json.loads(tools.read_text(encoding="utf-8"))
        raw["tau"] = [{"messages": t["traj"], "tools": schemas} for t in json.loads(tau.read_text(encoding="utf-8"))][:rows]
    rtu = SHARED / "llamafactory" / "reason_tool_use_demo_50.jsonl"
    if rtu.is_file():
        raw["rtu"] = [json.loads(x) for x in rtu.read_text(encoding="utf-8").splitlines() if x.strip()][:rows]
    for k, rs in raw.items():
        convs = []
        for r in rs:
            try:
                convs.append(normalize(r, None))
            except RowError as e:  # not a template matter: reported once
                convs.append(e)
        out[k] = convs
    return out


@dataclass
class Tally:
    rows: int = 0
    written: int = 0
    rejected: Counter = field(default_factory=Counter)
    unjustified: int = 0
    oracle_fail: int = 0
    crashed: int = 0
    past_stop: int = 0
    repeats: int = 0
    modes: Counter = field(default_factory=Counter)
    first: str = ""
    failures: list = field(default_factory=list)

    def fail(self, msg: str, conv, keep: int) -> None:
        self.first = self.first or msg
        if len(self.failures) < keep:
            self.failures.append((msg, conv))


def _stop_inside(tok, rows, stops) -> str:
    """A trained run holding a stop token before its last token (the oracle's prefix mode does not
    look for one): issue 15 ends a turn at its *first* stop token. Returns the run's text or ''."""
    from sftdata.testing.oracle import trained_runs

    ids = {tok.convert_tokens_to_ids(s) for s in stops}
    for r in rows:
        for _, run in trained_runs(r):
            if any(i in ids for i in run[:-1]):
                return repr(tok.decode(run)[:200])
    return ""


def _repeats_prompt(tok, rows) -> str:
    """A trained run whose first token is the control token its context ends with, e.g. DeepSeek-V3.2's
    generation prompt '<｜Assistant｜><think></think>' followed by a trained '</think>' (its history writes
    '<｜Assistant｜></think>'): the model never generates a second '</think>' there. The oracle's
    history_rewritten mode accepts such a run (its text is in F_k). Returns the run's text or ''."""
    from sftdata.testing.oracle import trained_runs

    control = set(tok.added_tokens_decoder)
    for r in rows:
        for ctx, run in trained_runs(r):
            if ctx and run and run[0] == ctx[-1] and run[0] in control:
                return f"context ends {tok.decode(ctx[-3:])!r}, run {tok.decode(run)[:120]!r}"
    return ""


def _transformers_view(tok, conv, tk) -> str:
    """Whether transformers itself renders the whole conversation (said beside an unjustified refusal)."""
    try:
        tok.apply_chat_template(conv.template_messages(), tools=conv.template_tools(), tokenize=False, **tk)
    except Exception as x:  # noqa: BLE001 - the template's own error, any type
        return f" [transformers raises too: {type(x).__name__}]"
    return " [transformers renders it]"


def run_one(name: str, tok, encoders, convs, tally_by_policy, keep: int) -> None:
    from sftdata.errors import RowError
    from sftdata.testing.oracle import check_rows, justified_refusal
    from sftdata.masking.tokenizer import control_token_pattern, control_tokens

    s = SPECS[name]
    tk = dict(s.template_kwargs)
    pattern = control_token_pattern(control_tokens(tok, tok.chat_template))
    for conv in convs:
        for policy, enc in encoders.items():
            t = tally_by_policy[policy]
            t.rows += 1
            if isinstance(conv, RowError):
                t.rejected[f"normalize:{conv.reason.value}"] += 1
                continue
            assistants = [k for k, m in enumerate(conv.messages) if m.role == "assistant" and m.train is not False]
            trained = assistants[-1:] if policy == "last" else None
            try:
                rows = enc.encode(conv)
            except RowError as e:
                t.rejected[e.reason.value] += 1
                try:
                    ok = justified_refusal(tok, conv, e, enc.stop.tokens, lossless=s.spec.lossless, control_pattern=pattern,
                                           template_kwargs=tk, trained=trained)
                except Exception as x:  # noqa: BLE001 - the oracle itself failed: count as unjustified, say why
                    ok, e = False, f"{e} (oracle raised {type(x).__name__}: {x})"
                if not ok:
                    t.unjustified += 1
                    t.fail(f"unjustified refusal: {e}{_transformers_view(tok, conv, tk)}", conv, keep)
                continue
            except Exception as e:  # noqa: BLE001 - sftdata crashed on the row
                t.crashed += 1
                t.fail(f"crash: {type(e).__name__}: {e} @ {traceback.extract_tb(e.__traceback__)[-1].name}", conv, keep)
                continue
            t.written += 1
            inner = _stop_inside(tok, rows, enc.stop.tokens)
            if inner:
                t.past_stop += 1
                t.fail(f"trained past a stop token: {inner}", conv, keep)
            dup = _repeats_prompt(tok, rows)
            if dup:
                t.repeats += 1
                t.fail(f"trained run repeats the prompt's last control token: {dup}", conv, keep)
            try:
                rep = check_rows(tok, conv, rows, enc.stop.tokens, trained=trained, template_kwargs=tk)
                t.modes.update(rep.modes)
                t.modes["no_stop"] += rep.no_stop
                t.modes["not_rendered"] += rep.not_rendered
            except AssertionError as e:
                t.oracle_fail += 1
                t.fail(f"oracle: {e}", conv, keep)
            except Exception as e:  # noqa: BLE001
                t.oracle_fail += 1
                t.fail(f"oracle raised {type(e).__name__}: {e}", conv, keep)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="substrings of template names to run")
    ap.add_argument("--examples", type=int, default=200, help="generated conversations per template (default 200)")
    ap.add_argument("--rows", type=int, default=None, help="first N rows of each real dataset (default: all)")
    ap.add_argument("--data", nargs="*", default=["gen", "tau", "rtu"], help="gen, tau, rtu")
    ap.add_argument("--policies", nargs="*", default=["exact", "last"])
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--show-failures", type=int, default=0, help="print the first N failing conversations per run")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    from sftdata import Encoder

    names = [n for n in SPECS if not args.only or any(o.lower() in n.lower() for o in args.only)]
    real = real_traces(args.rows) if any(d in args.data for d in ("tau", "rtu")) and SHARED.is_dir() else {}
    hdr = (f"{'template':<42} {'data':<4} {'policy':<5} {'rows':>5} {'written':>7} {'unjust':>6} {'oracle':>6} {'crash':>5} "
           f"{'>stop':>5} {'dup':>4} {'prefix':>6} {'mism':>5} {'rewr':>5} {'nostop':>6} {'sec':>5}  rejected by reason | first failure")
    print(hdr)
    print("-" * len(hdr))
    totals = Counter()
    for name in names:
        s = SPECS[name]
        tok = tokenizer_for(name)
        encoders = {p: Encoder(tok, turn_policy=p, stop_tokens=s.stop_tokens, template_kwargs=dict(s.template_kwargs))
                    for p in args.policies}
        for data in args.data:
            if data == "gen":
                convs = [served(c, s.caps) for c in generated(s.caps, args.examples, args.seed, **s.draw)]
            elif data in real:
                convs = [c if not hasattr(c, "messages") else served(c, s.caps) for c in real[data]]
            else:
                continue
            tallies = {p: Tally() for p in args.policies}
            t0 = time.process_time()
            run_one(name, tok, encoders, convs, tallies, args.show_failures)
            sec = time.process_time() - t0
            for p, t in tallies.items():
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(t.rejected.items())) or "-"
                print(f"{name:<42} {data:<4} {p:<5} {t.rows:>5} {t.written:>7} {t.unjustified:>6} {t.oracle_fail:>6} {t.crashed:>5} "
                      f"{t.past_stop:>5} {t.repeats:>4} {t.modes['prefix']:>6} {t.modes['prompt_mismatch']:>5} {t.modes['history_rewritten']:>5} "
                      f"{t.modes['no_stop']:>6} {sec:>5.0f}  {reasons}" + (f" | {t.first[:300]}" if t.first else ""), flush=True)
                totals.update(rows=t.rows, written=t.written, unjustified=t.unjustified, oracle=t.oracle_fail, crash=t.crashed, past_stop=t.past_stop, dup=t.repeats,
                              mism=t.modes["prompt_mismatch"], rewr=t.modes["history_rewritten"])
                for msg, conv in t.failures:
                    print(f"    FAIL {msg}\n    CONV {json.dumps(conv.to_dict() if hasattr(conv, 'to_dict') else str(conv), ensure_ascii=False)[:3000]}")
    print(f"\ntotal: {dict(totals)}")
    print("unjust: refusals transformers' rendering does not justify (oracle.justified_refusal); oracle: written rows failing")
    print("oracle.check_rows; crash: other exceptions from Encoder.encode; >stop: rows with a trained run that holds a stop token")
    print("before its end (trained past the turn's first stop); dup: rows with a trained run that starts with the control token")
    print("its context ends with (the prompt's last token trained again). prefix/mism/rewr: trained turns matched by the oracle")
    print("as P_k + turn / prompt_mismatch / history_rewritten; nostop: turns trained without a stop token. sec: CPU seconds.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
