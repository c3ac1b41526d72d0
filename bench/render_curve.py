"""``bench/render_curve.py``: the cost of rendering every prefix of one long conversation, plain
jinja vs the render memo (:mod:`sftdata.masking.render_memo`), issue 16 item 1.

For N messages (``bench/_prepare_long.build_row``, variants ``chat`` and ``tools``) and each
template (Qwen3's real template, ``sftdata.testing.qwen3``; the embedded default,
``sftdata.masking.tokenizer.load_tokenizer(None)``), renders ``m[:k]`` with and without the generation
prompt for every k (2N renders, the ones masking asks for), once with ``ChatTemplate(memo=False)``
and once with the memo on, and prints CPU seconds of each and their ratio, the CPU of rendering the
whole conversation once, and (``--prepare``) CPU of ``sftdata.prepare([row], tok)`` with
``SFTDATA_RENDER_MEMO=0`` and with the memo, each in a subprocess. Both renderings are compared
(outputs must be equal). Run: ``.venv/bin/python bench/render_curve.py --sizes 500 1k 2k 4k``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _prepare_long import build_row, count  # noqa: E402


def _tokenizer(name: str):
    if name == "qwen3":
        from sftdata.testing.qwen3 import qwen3_tokenizer

        return qwen3_tokenizer()
    from sftdata.masking.tokenizer import load_tokenizer

    return load_tokenizer(None)


def _renders(template, msgs, tools) -> tuple[float, list]:
    from sftdata.errors import RowError

    template.new_conversation()
    outs = []
    t0 = time.process_time()
    for k in range(1, len(msgs) + 1):
        for lst, gp in ((msgs[: k - 1], True), (msgs[:k], False)):
            try:
                outs.append(template.render(lst, tools, add_generation_prompt=gp, prepared=True))
            except RowError as e:
                outs.append(("error", str(e)))
    return time.process_time() - t0, outs


def _prepare_cpu(tok_name: str, variant: str, n: int, memo: bool) -> str:
    code = (
        "import sys,time; sys.path.insert(0,'bench'); from _prepare_long import build_row; import sftdata;"
        f"from render_curve import _tokenizer; tok=_tokenizer({tok_name!r}); row=build_row({variant!r},{n});"
        "t=time.process_time(); r=sftdata.prepare([row], tok); print(f'{time.process_time()-t:.2f}')"
    )
    env = dict(os.environ, SFTDATA_RENDER_MEMO="1" if memo else "0", PYTHONPATH=str(HERE.parent))
    p = subprocess.run([sys.executable, "-c", code], cwd=HERE.parent, env=env, capture_output=True, text=True)
    return p.stdout.strip().splitlines()[-1] if p.returncode == 0 and p.stdout.strip() else f"failed: {p.stderr.strip().splitlines()[-1:]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=count, default=[500, 1000, 2000, 4000])
    ap.add_argument("--variants", nargs="+", default=["chat", "tools"])
    ap.add_argument("--templates", nargs="+", default=["qwen3", "default"])
    ap.add_argument("--prepare", action="store_true", help="also time sftdata.prepare([row], tok) with the memo off and on")
    args = ap.parse_args()
    from sftdata.masking.template import ChatTemplate

    cols = ["template", "variant", "N", "plain 2N renders CPU s", "memo CPU s", "plain/memo", "one render CPU s", "memo/one render", "equal"]
    if args.prepare:
        cols += ["prepare memo off CPU s", "prepare memo on CPU s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for tname in args.templates:
        tok = _tokenizer(tname)
        specials = dict(tok.special_tokens_map)
        for variant in args.variants:
            for n in args.sizes:
                row = build_row(variant, n)
                msgs = ChatTemplate.prepare_messages(row["messages"])
                tools = row.get("tools")
                plain = ChatTemplate(tok.chat_template, specials, memo=False)
                memo = ChatTemplate(tok.chat_template, specials, memo=True)
                t_plain, out_plain = _renders(plain, msgs, tools)
                t_memo, out_memo = _renders(memo, msgs, tools)
                t0 = time.process_time()
                try:
                    plain.render(msgs, tools, prepared=True)
                except Exception:
                    pass
                t_one = time.process_time() - t0
                cells = [tname, variant, str(n), f"{t_plain:.2f}", f"{t_memo:.2f}", f"{t_plain / max(t_memo, 1e-9):.1f}",
                         f"{t_one:.3f}", f"{t_memo / max(t_one, 1e-9):.1f}", str(out_plain == out_memo)]
                if args.prepare:
                    cells += [_prepare_cpu(tname, variant, n, False), _prepare_cpu(tname, variant, n, True)]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
