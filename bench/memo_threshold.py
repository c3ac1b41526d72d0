"""``bench/memo_threshold.py``: where the render memo starts to pay, by conversation length
(:data:`sftdata.masking.template.MEMO_MIN_MESSAGES`).

For N messages (``bench/_prepare_long.build_row``, variants ``chat`` and ``tools``) and each
template (Qwen3's real template, ``sftdata.testing.qwen3``; the embedded default), renders a batch
of conversations of N messages through :class:`sftdata.masking.render.Renderer` (every render
masking makes: the training rendering, ``P_k`` and ``F_k`` of each turn), once with every
conversation rendered plainly and once with every conversation through the memo, and prints
microseconds of CPU per conversation (best of ``--trials``) and their ratio. The texts are the same
either way (``tests/masking/test_render_memo.py``); this is cost only.

Run: ``.venv/bin/python bench/memo_threshold.py --sizes 4 8 16 20 24 32 64``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _prepare_long import build_row  # noqa: E402
from render_curve import _tokenizer  # noqa: E402


def _per_conversation(tok, convs: list, memo_from: int, trials: int) -> float:
    """CPU microseconds per conversation (best of ``trials``), every conversation rendering
    through the memo when it has at least ``memo_from`` messages."""
    from sftdata.encoder import Encoder
    from sftdata.masking.render import Renderer
    from sftdata.masking.rendered import RenderStats
    from sftdata.masking.template import ChatTemplate
    from sftdata.masking.tokenizer import control_tokens, special_tokens_map, template_source

    stops = Encoder(tok).stop.tokens
    renderers = {}
    for tools in (False, True):
        source = template_source(tok, [{}] if tools else None)
        template = ChatTemplate(source, special_tokens_map(tok), memo_min_messages=memo_from)
        renderers[tools] = Renderer(template, stops, control_tokens=control_tokens(tok, source))
    best = float("inf")
    for trial in range(trials + 1):  # the first warms the caches (compiled code, tokenizer)
        t0 = time.process_time()
        for c in convs:
            renderers[bool(c.tools)].render(c, RenderStats())
        if trial:
            best = min(best, time.process_time() - t0)
    return best / len(convs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[4, 8, 16, 20, 24, 32, 64])
    ap.add_argument("--variants", nargs="+", default=["chat", "tools"])
    ap.add_argument("--templates", nargs="+", default=["qwen3", "default"])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--messages-per-size", type=int, default=1024, help="messages rendered per size (conversations = this / N)")
    args = ap.parse_args()
    from sftdata.formats import normalize
    from sftdata.masking.template import MEMO_MIN_MESSAGES

    print(f"MEMO_MIN_MESSAGES = {MEMO_MIN_MESSAGES}; CPU us per conversation, best of {args.trials}")
    print("| template | variant | N messages | conversations | plain us | memo us | plain/memo |")
    print("|---|---|---|---|---|---|---|")
    for tname in args.templates:
        tok = _tokenizer(tname)
        for variant in args.variants:
            for n in args.sizes:
                convs = [normalize(build_row(variant, n)) for _ in range(max(4, args.messages_per_size // n))]
                plain = _per_conversation(tok, convs, n + 1, args.trials)
                memo = _per_conversation(tok, convs, 0, args.trials)
                print(f"| {tname} | {variant} | {n} | {len(convs)} | {plain:,.0f} | {memo:,.0f} | {plain / memo:.2f} |", flush=True)


if __name__ == "__main__":
    main()
