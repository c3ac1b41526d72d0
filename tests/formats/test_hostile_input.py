"""Hostile or odd input and the mistakes people make: each is a per-row reason or a clear
exit-2 message naming the file/line/row/field, never a traceback, a hang or a memory blow-up."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sftdata import prepare
from sftdata.cli import main as cli_main
from sftdata.errors import ConfigError, Reason, RowError
from sftdata.formats import iter_rows
from sftdata.masking.render_limits import RenderLimits
from sftdata.masking.template import ChatTemplate
from sftdata.testing.tokenizers import build_tokenizer

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "traces.jsonl"


@pytest.fixture(scope="module")
def chatml():
    return build_tokenizer("chatml")


def _chat(user: str = "hi", answer: str = "hello") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def _jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- rows


def test_lone_surrogate_is_a_rejected_row_not_a_crash(chatml, tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [_chat(), '{"messages": [{"role": "user", "content": "cut \\ud83d"}, {"role": "assistant", "content": "ok"}]}', _chat("2+2?", "4")])
    ds = prepare(src, chatml, tmp_path / "out")
    s = ds.sftdata_stats
    assert (s["rows_in"], s["rows_out"], s["rejected_by_reason"]) == (3, 2, {"invalid_unicode": 1})
    rej = json.loads((tmp_path / "out" / "rejects.jsonl").read_text())
    assert rej["row"] == 1 and rej["field"] == "messages[0].content" and rej["stage"] == "read"
    assert f"{src}:2" in rej["message"]
    # a valid surrogate pair (an emoji written as escapes) is fine
    [(_, row)] = list(iter_rows(_jsonl(tmp_path / "ok.jsonl", ['{"text": "\\ud83d\\ude00"}'])))
    assert row == {"text": "\U0001f600"}


def test_lone_surrogate_in_python_rows(chatml):
    ds = prepare([_chat("a\ud800b"), _chat()], chatml)
    assert ds.sftdata_stats["rejected_by_reason"] == {"invalid_unicode": 1}


def test_duplicated_key_is_rejected_with_its_path(chatml, tmp_path):
    dup = '{"messages": [{"role": "user", "content": "q"}, {"role": "user", "role": "assistant", "content": "a"}]}'
    src = _jsonl(tmp_path / "in.jsonl", [_chat(), dup])
    [_, (index, err)] = list(iter_rows(src))
    assert isinstance(err, RowError) and err.reason is Reason.DUPLICATE_KEY
    assert (index, err.row, err.field, err.stage) == (1, 1, "messages[1].role", "read")
    ds = prepare(src, chatml)
    assert ds.sftdata_stats["rejected_by_reason"] == {"duplicate_key": 1}
    # the same inside a JSON array file, and inside an object wrapping the rows
    (tmp_path / "a.json").write_text(f"[{json.dumps(_chat())}, {dup}]")
    (tmp_path / "w.json").write_text(f'{{"data": [{json.dumps(_chat())}, {dup}]}}')
    for name in ("a.json", "w.json"):
        items = list(iter_rows(tmp_path / name))
        assert isinstance(items[1][1], RowError) and items[1][1].field == "messages[1].role", name


def test_json_error_column_does_not_count_the_newline(tmp_path):
    line = '{"text": "b"'
    [(_, err)] = list(iter_rows(_jsonl(tmp_path / "in.jsonl", [line])))
    assert f"at column {len(line) + 1})" in err.message and "line 2" not in err.message


# ---------------------------------------------------------------------------- templates

HOSTILE = {
    "range": "{% for i in range(10**9) %}x{% endfor %}",
    "string_times_huge": "{{ 'x' * 10**10 }}",
    "list_times_huge": "{{ ([1] * 10**10) | length }}",
    "huge_power": "{{ 7 ** (10 ** 10) }}",
    "doubling_tilde": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "doubling_plus": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "doubling_format_filter": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = '%s%s'|format(ns.s, ns.s) %}{% endfor %}",
    "doubling_percent": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = '%s%s' % (ns.s, ns.s) %}{% endfor %}",
    "doubling_str_format": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = '{}{}'.format(ns.s, ns.s) %}{% endfor %}",
    "doubling_format_map": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = '{a}{a}'.format_map({'a': ns.s}) %}{% endfor %}",
    "center": "{{ 'x'.center(10**10) }}",
    "format_width": "{{ '{:>99999999999}'.format(1) }}",
    "percent_width": "{{ '%99999999999d' % 1 }}",
    "indent_filter": "{{ 'a\\nb' | indent(10**10) }}",
    "output_flood": "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'y' * 100 }}{% endfor %}{% endfor %}",
    "nested_loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_is_stopped_per_row(name):
    t = ChatTemplate(HOSTILE[name], {}, limits=RenderLimits(seconds=0.5, max_chars=1_000_000))
    t0 = time.perf_counter()
    with pytest.raises(RowError) as ei:
        t.render([{"role": "user", "content": "hi"}])
    assert ei.value.reason is Reason.RENDER_LIMIT, ei.value
    assert time.perf_counter() - t0 < 5
    if name.startswith("doubling"):  # stopped by the size check before the step runs, not by the timer
        assert "would build" in ei.value.message or "'~' built" in ei.value.message, ei.value.message


ESCAPES = {
    "mro": "{{ messages.__class__.__mro__[1].__subclasses__() }}",
    "cycler": "{{ cycler.__init__.__globals__.os.popen('echo pwned').read() }}",
    "str_format": "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "namespace_underscore": "{% set ns = namespace(_secret=1) %}{{ ns._secret }}",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_sandbox_escapes_stay_refused(name):
    t = ChatTemplate(ESCAPES[name], {})
    with pytest.raises(RowError) as ei:
        t.render([{"role": "user", "content": "hi"}])
    assert ei.value.reason is Reason.TEMPLATE_ERROR


def test_render_limits_reach_prepare_rows(chatml, tmp_path):
    slow = "{% for m in messages %}{{ m.content }}{% if m.content == 'slow' %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}{% endfor %}"
    tpl = tmp_path / "slow.jinja"
    tpl.write_text(slow)
    ds = prepare([_chat("slow", "a"), _chat("fast", "b")], chatml, chat_template=tpl, render_timeout=0.3, turn_policy="all")
    s = ds.sftdata_stats
    assert s["rejected_by_reason"] == {"render_limit": 1} and s["rows_out"] == 1
    assert s["options"]["render_timeout"] == 0.3


def test_template_that_renders_no_row_stops_early(chatml, tmp_path):
    tpl = tmp_path / "refuses.jinja"
    tpl.write_text("{{ raise_exception('this template renders nothing') }}")
    rows = [_chat(f"q{i}", "a") for i in range(200)]
    with pytest.raises(ConfigError, match=r"failed on each of the first \d+ rows.*renders nothing"):
        prepare(rows, chatml, tmp_path / "out", chat_template=tpl)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_chat_template_syntax_error_names_file_and_line(tmp_path, capsys):
    tpl = tmp_path / "broken.jinja"
    tpl.write_text("{% for m in messages %}\n{{ m.content }}\n{% endfor\n")
    rc = cli_main(["prepare", str(EXAMPLES), "-o", str(tmp_path / "o"), "--chat-template", str(tpl), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tpl}:3: chat template syntax error" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- CLI mistakes


def test_template_kwargs_without_equals(tmp_path, capsys):
    rc = cli_main(["prepare", str(EXAMPLES), "-o", str(tmp_path / "o"), "--template-kwargs", "enable_thinking", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "KEY=VALUE" in err and "'enable_thinking'" in err


def test_template_kwargs_cannot_set_the_render_arguments(tmp_path, capsys):
    """``--template-kwargs messages=...`` used to fail every row with a TypeError (a duplicated
    keyword); it is a configuration error naming the variable."""
    rc = cli_main(["prepare", str(EXAMPLES), "-o", str(tmp_path / "o"), "--template-kwargs", "messages=1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "template_kwargs cannot set messages" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="cannot set add_generation_prompt, tools"):
        prepare(EXAMPLES, template_kwargs={"tools": [], "add_generation_prompt": True})
    with pytest.raises(ValueError, match="cannot set documents"):
        ChatTemplate("{{ messages }}", template_kwargs={"documents": []})


def test_empty_input(tmp_path, capsys):
    src = tmp_path / "empty.jsonl"
    src.write_text("\n\n")
    rc = cli_main(["prepare", str(src), "-o", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and "no rows" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()
    with pytest.raises(ConfigError, match="no rows"):
        prepare(src)
    assert cli_main(["prepare", str(src), "-o", str(tmp_path / "o"), "--no-progress", "--allow-empty"]) == 0
    capsys.readouterr()
    assert cli_main(["show", str(tmp_path / "o")]) == 2 and "has no rows" in capsys.readouterr().err
    assert cli_main(["pack", str(tmp_path / "o"), "-L", "64", "-o", str(tmp_path / "p")]) == 2
    assert "no rows" in capsys.readouterr().err


def test_max_length_rejecting_everything_says_the_shortest_length(tmp_path, capsys):
    rc = cli_main(["prepare", str(EXAMPLES), "-o", str(tmp_path / "o"), "--max-length", "8", "--no-progress"])
    err = capsys.readouterr().err
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    shortest = stats["too_long_min_length"]
    assert rc == 2 and shortest > 8 and f"has {shortest:,} tokens (--max-length 8)" in err
    rej = json.loads((tmp_path / "o" / "rejects.jsonl").read_text().splitlines()[0])
    assert rej["reason"] == "too_long" and rej["length"] >= shortest


def test_show_errors_and_closed_pipe(tmp_path, capsys):
    (tmp_path / "notdata").mkdir()
    (tmp_path / "notdata" / "x.txt").write_text("x")
    assert cli_main(["show", str(tmp_path / "notdata")]) == 2
    assert "stats.json" in capsys.readouterr().err
    out = tmp_path / "o"
    prepare([_chat("word " * 20000, "ok")], None, out)
    proc = subprocess.run(
        f"{sys.executable} -m sftdata.cli show {out} --no-color | head -c 100",
        shell=True, capture_output=True, text=True, timeout=120,
    )
    assert len(proc.stdout) == 100 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_existing_output_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli_main(["prepare", str(EXAMPLES), "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli_main(["prepare", str(EXAMPLES), "-o", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["prepare", str(EXAMPLES), "-o", str(out), "--no-progress", "--overwrite", "--turn-policy", "all"]) == 0
    assert json.loads((out / "stats.json").read_text())["options"]["turn_policy"] == "all"
    with pytest.raises(ConfigError, match="overwrite"):
        prepare(EXAMPLES, output=out)
