"""The shared byte-level BPE of the offline test tokenizers: a deterministic built-in corpus
(prose, chat lines, JSON documents, code, some non-ASCII) and the BPE trained on it.

:mod:`sftdata.testing.tokenizers` gives this BPE each family's added tokens and template;
the pre-tokenizer split is the one Qwen2/Qwen3 use, so merges across turn boundaries
happen as they do with real vocabularies.
"""

from __future__ import annotations

import functools
import json
import random

#: Pre-tokenizer split pattern (the one Qwen2/Qwen3 use: digits one by one, punctuation
#: runs keep trailing newlines, whitespace runs before a word stay separate).
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Vocabulary size (byte alphabet included) of the shared test BPE: 256 bytes + ~1.7k merges.
TEST_VOCAB_SIZE = 2000


# --------------------------------------------------------------------------------------
# Corpus and the shared BPE
# --------------------------------------------------------------------------------------

_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by word "
    "but not what all were we when your can said there use an each which she do how their if will up other about "
    "out many then them these so some her would make like him into time has look two more write go see number no "
    "way could people my than first water been call who its now find long down day did get come made may part "
    "over new sound take only little work know place year live me back give most very after thing our just name "
    "good sentence man think say great where help through much before line right too mean old any same tell boy "
    "follow came want show also around form three small set put end does another well large must big even such "
    "because turn here why ask went men read need land different home us move try kind hand picture again change "
    "off play spell air away animal house point page letter mother answer found study still learn should world"
).split()

_TECH_WORDS = (
    "function return value error file path query result weather city temperature search user assistant system "
    "tool model response call arguments name parameters type object string integer number boolean array "
    "properties required description content message think reasoning step answer question python data list "
    "config request status code output input token template chat conversation json schema id args kwargs "
    "import class def self none true false null async await lambda yield print range len dict str int float"
).split()

_UNICODE = (
    "你好", "世界", "天气", "北京", "上海", "谢谢", "今天", "温度", "こんにちは", "東京", "ありがとう", "日本語",
    "안녕하세요", "서울", "Привет", "мир", "погода", "café", "naïve", "über", "señor", "façade", "Ελληνικά",
    "مرحبا", "שלום", "नमस्ते", "😀", "🚀", "👍🏽", "🇫🇷", "👩‍💻", "e\u0301", "n\u0303", "°C", "€", "…", "—",
    "“quoted”", "«guillemets»", "½", "→", "✓",
)

_CHAT_LINES = (
    "You are a helpful assistant.",
    "Cutting Knowledge Date: December 2023",
    "Environment: ipython",
    "Today Date: 26 Jul 2024",
    "These functions are available.",
    "To call one, reply with a JSON object carrying the function name and its arguments.",
    "# Tools",
    "system\n", "user\n", "assistant\n", "model\n", "tool\n",
)


def _sentence(rng: random.Random) -> str:
    n = rng.randint(4, 16)
    words = []
    for _ in range(n):
        r = rng.random()
        if r < 0.70:
            words.append(rng.choice(_WORDS))
        elif r < 0.88:
            words.append(rng.choice(_TECH_WORDS))
        elif r < 0.95:
            words.append(str(rng.randint(0, 10 ** rng.randint(1, 5))))
        else:
            words.append(rng.choice(_UNICODE))
    words[0] = words[0].capitalize()
    text = " ".join(words)
    return text + rng.choice([".", ".", ".", "?", "!", ":", ";", ","])


def _json_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth < 2 and r < 0.2:
        return {rng.choice(_TECH_WORDS): _json_value(rng, depth + 1) for _ in range(rng.randint(1, 4))}
    if depth < 2 and r < 0.3:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if r < 0.55:
        return " ".join(rng.choice(_WORDS + _TECH_WORDS) for _ in range(rng.randint(1, 4)))
    if r < 0.7:
        return rng.randint(-1000, 100000)
    if r < 0.8:
        return round(rng.uniform(-100, 100), rng.randint(1, 4))
    if r < 0.9:
        return rng.choice([True, False, None])
    return rng.choice(_UNICODE)


def _json_doc(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        obj = {"name": rng.choice(_TECH_WORDS) + "_" + rng.choice(_WORDS), "arguments": _json_value(rng, 1)}
    elif r < 0.6:
        obj = {
            "type": "function",
            "function": {
                "name": rng.choice(_TECH_WORDS),
                "description": _sentence(rng),
                "parameters": {
                    "type": "object",
                    "properties": {
                        rng.choice(_TECH_WORDS): {"type": rng.choice(["string", "integer", "number", "boolean"])}
                        for _ in range(rng.randint(1, 3))
                    },
                    "required": [rng.choice(_TECH_WORDS)],
                },
            },
        }
    else:
        obj = {rng.choice(_TECH_WORDS): _json_value(rng) for _ in range(rng.randint(1, 5))}
    indent = rng.choice([None, None, 2, 4])
    return json.dumps(obj, ensure_ascii=rng.random() < 0.3, indent=indent)


def _code(rng: random.Random) -> str:
    name = rng.choice(_TECH_WORDS) + "_" + rng.choice(_WORDS)
    args = ", ".join(rng.sample(_TECH_WORDS, rng.randint(0, 3)))
    body = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.random()
        var = rng.choice(_TECH_WORDS)
        if kind < 0.3:
            body.append(f"    {var} = {rng.choice(_TECH_WORDS)}({rng.randint(0, 99)})")
        elif kind < 0.5:
            body.append(f"    if {var} is None:\n        raise ValueError(\"{_sentence(rng)}\")")
        elif kind < 0.7:
            body.append(f"    for i in range(len({var})):\n        print(i, {var}[i])")
        elif kind < 0.85:
            body.append(f"    # {_sentence(rng)}")
        else:
            body.append(f"    {var}.append({{'{rng.choice(_TECH_WORDS)}': {rng.randint(0, 9)}}})")
    body.append(f"    return {rng.choice(_TECH_WORDS)}")
    if rng.random() < 0.25:
        return f"function {name}({args}) {{\n  const x = await fetch('/api/{name}');\n  return x.json();\n}}"
    if rng.random() < 0.15:
        return f"$ python -m {name} --{rng.choice(_TECH_WORDS)} {rng.randint(1, 9)} > out.txt && echo done"
    return f"def {name}({args}):\n" + "\n".join(body)


def training_corpus(n_docs: int = 2500, seed: int = 0) -> list[str]:
    """A deterministic synthetic corpus: English-ish prose, JSON, code, unicode and chat boilerplate.

    Args:
        n_docs: number of documents (each a few hundred characters at most).
        seed: the random seed; the same (n_docs, seed) always gives the same list.

    Returns:
        A list of strings, suitable for ``Tokenizer.train_from_iterator``.
    """
    rng = random.Random(seed)
    docs: list[str] = []
    for _ in range(n_docs):
        r = rng.random()
        if r < 0.45:
            sep = rng.choice([" ", " ", "\n", "\n\n"])
            docs.append(sep.join(_sentence(rng) for _ in range(rng.randint(1, 5))))
        elif r < 0.7:
            docs.append(_json_doc(rng))
        elif r < 0.85:
            docs.append(_code(rng))
        elif r < 0.93:
            docs.append(" ".join(rng.choice(_UNICODE) for _ in range(rng.randint(2, 10))))
        else:
            docs.append(rng.choice(_CHAT_LINES) + "\n" + _sentence(rng))
    return docs


def _new_bpe_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe_json(corpus: list[str], vocab_size: int) -> str:
    """Train a byte-level BPE (no added tokens) on ``corpus`` and return its ``tokenizer.json`` text.

    The 256 byte symbols are always in the vocabulary, so any text encodes (no unknown tokens).
    Training is deterministic for a given corpus and ``vocab_size``.
    """
    from tokenizers import pre_tokenizers, trainers

    tok = _new_bpe_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok.to_str()


@functools.lru_cache(maxsize=None)
def base_tokenizer_json() -> str:
    """The shared test BPE (``TEST_VOCAB_SIZE`` entries, no added tokens) as ``tokenizer.json`` text.

    Trained once per process on :func:`training_corpus` (well under a second) and cached.
    """
    return train_bpe_json(training_corpus(), TEST_VOCAB_SIZE)
