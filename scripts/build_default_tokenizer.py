#!/usr/bin/env python
"""Build sftdata's embedded default tokenizer into ``sftdata/assets/default/``.

A small byte-level BPE (no downloads: trained on a synthetic corpus generated below,
deterministically) with ChatML control tokens and a Qwen3-like chat template:

* special tokens ``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos); no BOS;
* non-special added tokens ``<think>``, ``</think>``, ``<tool_call>``, ``</tool_call>``,
  ``<tool_response>``, ``</tool_response>`` (single ids, kept by ``skip_special_tokens``,
  as in Qwen3);
* the chat template is ``sftdata/testing/templates/qwen3.jinja`` by default (system, tools,
  tool calls, tool results, think blocks; ``--template`` picks another file), stored both as
  ``tokenizer_config.json["chat_template"]`` (read by every transformers version) and as
  ``chat_template.jinja``. The BPE does not depend on the template.

``len(tokenizer)`` is :data:`TOTAL_SIZE` (a multiple of 64, convenient as a model's
``vocab_size``). Usage::

    python scripts/build_default_tokenizer.py [--out DIR] [--template FILE] [--check]

``--check`` rebuilds into a temporary folder and fails if the result differs from ``--out``
(use it in CI to catch a template or script change without a rebuild).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "sftdata" / "assets" / "default"
TEMPLATE = REPO / "scripts" / "default_chat_template.jinja"

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
ADDED_TOKENS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
#: len(tokenizer): BPE entries (256 bytes + merges) + the 9 added tokens.
TOTAL_SIZE = 6144
BPE_SIZE = TOTAL_SIZE - len(SPECIAL_TOKENS) - len(ADDED_TOKENS)
MODEL_MAX_LENGTH = 32768
SEED = 20240601
N_DOCS = 24000

#: Qwen2/Qwen3 pre-tokenizer split pattern (single digits, punctuation runs keep newlines).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ---------------------------------------------------------------------------------------
# Synthetic corpus
# ---------------------------------------------------------------------------------------

WORDS = """
the be to of and a in that have it for not on with he as you do at this but his by from they we say her she or
an will my one all would there their what so up out if about who get which go me when make can like time no just
him know take people into year your good some could them see other than then now look only come its over think
also back after use two how our work first well way even new want because any these give day most us is was are
were been has had did said made went saw found told asked used called tried left felt became seemed kept began
showed heard turned started moved lived believed brought happened wrote provided sat stood lost paid met included
continued set learned changed led understood watched followed stopped created spoke read allowed added spent grew
opened walked offered remembered loved considered appeared bought waited served died sent expected built stayed
fell cut reached killed remained suggested raised passed sold required reported decided pulled
thing man world life hand part child eye woman place week case point government company number group problem fact
money story example lot study book job word business issue side kind head house service friend father power hour
game line end member law car city community name president team minute idea kid body information back parent face
others level office door health person art war history party result change morning reason research girl guy moment
air teacher force education foot boy age policy everything process music market sense nation plan college interest
death experience effect class control care field development role effort rate heart drug show leader light voice
wife police mind price report decision son view relationship town road arm difference value building action model
season society tax director position player record paper space ground form event official matter center couple site
project activity star table need court oil situation cost industry figure street image phone data picture practice
piece land product doctor wall patient worker news test movie north love support technology step baby computer type
attention film tree source organization hair window evidence population site truth answer question weather file
good new first last long great little own other old right big high different small large next early young important
few public bad same able simple clear free full special easy strong certain possible whole sure late hard real
best better true recent local human likely major personal current national natural physical short single common
very often however too usually really already always sometimes never perhaps maybe quite rather almost again here
there today tomorrow yesterday soon later still together finally probably quickly carefully exactly simply
""".split()

TECH = """
function return value error file path query result temperature search user assistant system tool model response
call arguments name parameters type object string integer number boolean array properties required description
content message reasoning step answer python data list config request status code output input token template
chat conversation json schema id args kwargs import class def self none true false null async await lambda yield
print range len dict str int float tensor batch loss gradient optimizer learning rate epoch checkpoint dataset
training inference server client http https api endpoint url header body timeout retry cache database table column
row index key map filter reduce sort merge split join parse format encode decode buffer stream socket thread
process memory cpu gpu cuda kernel shape dtype device module package install version release branch commit
merge pull push test assert mock fixture debug log warning info exception traceback stack frame variable
""".split()

NAMES = "Alice Bob Carol Dave Eve Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil Trent Victor Walter".split()
CITIES = "Paris London Tokyo Berlin Madrid Rome Lisbon Oslo Cairo Lagos Lima Seoul Mumbai Sydney Toronto Boston Denver Austin".split()

MULTILINGUAL = (
    "今天天气很好，我们去公园散步吧。", "请帮我查一下北京明天的天气。", "这个函数返回一个列表。", "谢谢你的帮助！",
    "東京の天気はどうですか？", "このファイルを読み込んでください。", "ありがとうございます。", "日本語で答えてください。",
    "서울의 날씨는 어때요?", "감사합니다.", "Привет! Как дела?", "Погода в Москве сегодня хорошая.",
    "Bonjour, comment ça va ? Il fait beau à Paris.", "Ça coûte 12,50 € — c'est déjà ça.",
    "Guten Tag! Wie ist das Wetter in München?", "Straße, Größe, Übung, schön.",
    "¿Dónde está la estación? Mañana será un día soleado.", "Olá! Tudo bem? Não sei.",
    "Γεια σου κόσμε.", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "Xin chào thế giới", "สวัสดีชาวโลก",
)
EMOJI = ("😀", "😂", "🙂", "👍", "👍🏽", "🚀", "🔥", "✅", "❌", "⚠️", "🎉", "💡", "🌦", "🇫🇷", "🇯🇵", "👩‍💻", "❤️")
SYMBOLS = ("°C", "°F", "€", "$", "£", "¥", "%", "±", "×", "÷", "→", "←", "≤", "≥", "≠", "…", "—", "–", "“", "”", "‘", "’", "•", "½", "©")


def sentence(rng: random.Random) -> str:
    n = rng.randint(4, 18)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.68:
            out.append(rng.choice(WORDS))
        elif r < 0.84:
            out.append(rng.choice(TECH))
        elif r < 0.89:
            out.append(rng.choice(NAMES + CITIES))
        elif r < 0.95:
            out.append(str(rng.choice([rng.randint(0, 100), rng.randint(0, 10000), round(rng.uniform(0, 100), 2)])))
        else:
            out.append(rng.choice(SYMBOLS + EMOJI))
    out[0] = out[0].capitalize()
    text = " ".join(out)
    if rng.random() < 0.15:
        i = rng.randrange(len(out))
        out[i] = rng.choice(['"' + out[i] + '"', "(" + out[i] + ")", "`" + out[i] + "`", "**" + out[i] + "**"])
        text = " ".join(out)
    return text + rng.choice(".........?!:;")


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(1, 6)))


def markdown(rng: random.Random) -> str:
    parts = [f"{'#' * rng.randint(1, 3)} {sentence(rng)[:-1]}", "", paragraph(rng), ""]
    for i in range(rng.randint(2, 5)):
        bullet = rng.choice(["-", "*", f"{i + 1}."])
        parts.append(f"{bullet} {sentence(rng)}")
    if rng.random() < 0.5:
        parts += ["", "```python", code_python(rng), "```"]
    if rng.random() < 0.3:
        parts += ["", "| name | value |", "|------|-------|"]
        parts += [f"| {rng.choice(TECH)} | {rng.randint(0, 999)} |" for _ in range(rng.randint(1, 4))]
    return "\n".join(parts)


def json_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth < 3 and r < 0.18:
        return {rng.choice(TECH): json_value(rng, depth + 1) for _ in range(rng.randint(1, 4))}
    if depth < 3 and r < 0.28:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if r < 0.55:
        return sentence(rng) if rng.random() < 0.3 else " ".join(rng.choice(WORDS + TECH) for _ in range(rng.randint(1, 3)))
    if r < 0.7:
        return rng.randint(-1000, 1000000)
    if r < 0.8:
        return round(rng.uniform(-1000, 1000), rng.randint(1, 5))
    if r < 0.9:
        return rng.choice([True, False, None])
    return rng.choice(MULTILINGUAL + tuple(CITIES))


def json_doc(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
        obj = {"name": rng.choice(TECH) + "_" + rng.choice(WORDS), "arguments": {rng.choice(TECH): json_value(rng, 2) for _ in range(rng.randint(0, 3))}}
    elif r < 0.5:
        props = {k: {"type": rng.choice(["string", "integer", "number", "boolean", "array", "object"]), "description": sentence(rng)} for k in rng.sample(TECH, rng.randint(1, 4))}
        obj = {"type": "function", "function": {"name": rng.choice(["get_", "search_", "run_", "read_", "list_"]) + rng.choice(TECH), "description": sentence(rng), "parameters": {"type": "object", "properties": props, "required": sorted(props)[: rng.randint(0, len(props))]}}}
    else:
        obj = {rng.choice(TECH): json_value(rng) for _ in range(rng.randint(1, 6))}
    return json.dumps(obj, ensure_ascii=rng.random() < 0.2, indent=rng.choice([None, None, None, 2, 4]))


def code_python(rng: random.Random) -> str:
    name = rng.choice(TECH) + "_" + rng.choice(WORDS)
    args = ", ".join(rng.sample(TECH, rng.randint(0, 3)))
    lines = [f"def {name}({args}):", f'    """{sentence(rng)}"""']
    for _ in range(rng.randint(1, 6)):
        v = rng.choice(TECH)
        lines.append(
            rng.choice(
                [
                    f"    {v} = {rng.choice(TECH)}({rng.randint(0, 99)})",
                    f"    if {v} is None:\n        raise ValueError(f\"bad {v}: {{{v}!r}}\")",
                    f"    for i, x in enumerate({v}):\n        {rng.choice(TECH)}[i] = x * {rng.randint(2, 9)}",
                    f"    # {sentence(rng)}",
                    f"    {v}.append({{'{rng.choice(TECH)}': {rng.randint(0, 9)}, \"ok\": True}})",
                    f"    with open('{rng.choice(TECH)}.json') as f:\n        {v} = json.load(f)",
                    f"    {v} = [x for x in {rng.choice(TECH)} if x > {rng.randint(0, 9)}]",
                ]
            )
        )
    lines.append(f"    return {rng.choice(TECH)}")
    return "\n".join(lines)


def code_other(rng: random.Random) -> str:
    r = rng.random()
    name = rng.choice(TECH) + rng.choice(WORDS).capitalize()
    if r < 0.4:
        return (
            f"export async function {name}(options) {{\n  const res = await fetch(`/api/{rng.choice(TECH)}?id=${{options.id}}`);\n"
            f"  if (!res.ok) throw new Error('{sentence(rng)}');\n  return res.json();\n}}"
        )
    if r < 0.7:
        return (
            f"$ pip install {rng.choice(TECH)}=={rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}\n"
            f"$ python -m {rng.choice(TECH)} --{rng.choice(TECH)} {rng.randint(1, 64)} > out.log 2>&1 && echo done\n"
            f"$ ls -la /home/{rng.choice(NAMES).lower()}/{rng.choice(TECH)}"
        )
    return f"SELECT {rng.choice(TECH)}, COUNT(*) FROM {rng.choice(TECH)}s WHERE {rng.choice(TECH)} > {rng.randint(0, 100)} GROUP BY 1 ORDER BY 2 DESC;"


def chat_snippet(rng: random.Random) -> str:
    q = sentence(rng)
    a = paragraph(rng)
    city = rng.choice(CITIES)
    r = rng.random()
    if r < 0.3:
        return f"What is the weather in {city}?\nThe weather in {city} is {rng.randint(-5, 35)}°C and {rng.choice(['sunny', 'cloudy', 'rainy', 'windy'])}."
    if r < 0.6:
        return f"{q}\n\n{a}"
    if r < 0.8:
        return f"Let me think step by step.\n1. {sentence(rng)}\n2. {sentence(rng)}\nSo the answer is {rng.randint(0, 1000)}."
    return f"You are a helpful assistant.\n\n# Tools\n\nThese functions are available.\n{json_doc(rng)}"


def corpus(n_docs: int = N_DOCS, seed: int = SEED) -> list[str]:
    """The deterministic training corpus (a list of documents)."""
    rng = random.Random(seed)
    gens = [
        (0.30, paragraph),
        (0.10, markdown),
        (0.18, json_doc),
        (0.12, code_python),
        (0.06, code_other),
        (0.14, chat_snippet),
        (0.10, lambda r: " ".join(r.choice(MULTILINGUAL) + r.choice(["", " ", " ", "\n"]) for _ in range(r.randint(1, 4)))),
    ]
    weights = [w for w, _ in gens]
    fns = [f for _, f in gens]
    return [rng.choices(fns, weights)[0](rng) for _ in range(n_docs)]


# ---------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------


def build(out: Path, template_path: Path = TEMPLATE) -> int:
    """Train, wrap and save the tokenizer into ``out`` with the chat template at ``template_path``;
    returns ``len(tokenizer)``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    if tok.get_vocab_size() != BPE_SIZE:
        raise SystemExit(f"corpus too small: BPE has {tok.get_vocab_size()} entries, wanted {BPE_SIZE}")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)

    template = template_path.read_text(encoding="utf-8")
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        clean_up_tokenization_spaces=False,
        model_max_length=MODEL_MAX_LENGTH,
    )
    wrapped.chat_template = template
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file():
            old.unlink()
    wrapped.save_pretrained(str(out))

    # portable config: a class name every transformers version knows, and the template inline
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.pop("backend", None)
    # transformers 5 writes "extra_special_tokens"; 4.x reads that key as a dict of named tokens,
    # while every version reads the list under "additional_special_tokens"
    extra = cfg.pop("extra_special_tokens", None)
    if extra:
        cfg["additional_special_tokens"] = list(extra)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["chat_template"] = template
    cfg["model_max_length"] = MODEL_MAX_LENGTH
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")

    # sanity checks on what was written
    loaded = AutoTokenizer.from_pretrained(str(out))
    n = len(loaded)
    if n != TOTAL_SIZE:
        raise SystemExit(f"len(tokenizer) is {n}, expected {TOTAL_SIZE}")
    if loaded.chat_template != template or loaded.eos_token != "<|im_end|>" or loaded.pad_token != "<|endoftext|>":
        raise SystemExit("saved tokenizer does not reload as built")
    if set(loaded.all_special_tokens) | set(getattr(loaded, "extra_special_tokens", [])) != set(SPECIAL_TOKENS):
        raise SystemExit(f"special tokens reload as {loaded.all_special_tokens}")
    for t in SPECIAL_TOKENS + ADDED_TOKENS:
        if len(loaded.encode(t, add_special_tokens=False)) != 1:
            raise SystemExit(f"{t} is not a single token")
    size = sum(p.stat().st_size for p in out.iterdir())
    if size >= 1_000_000:
        raise SystemExit(f"asset dir is {size} bytes, over 1 MB")
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare with --out")
    parser.add_argument(
        "--template", type=Path, default=TEMPLATE, help="chat template file to embed (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), args.template)
            names = sorted(p.name for p in Path(tmp).iterdir())
            _, mismatch, errors = filecmp.cmpfiles(tmp, args.out, names, shallow=False)
            if mismatch or errors:
                print(f"out of date: {mismatch + errors}", file=sys.stderr)
                return 1
        print(f"{args.out} is up to date")
        return 0
    n = build(args.out, args.template)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out}: len(tokenizer) = {n}, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
