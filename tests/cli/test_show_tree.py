"""`sftdata show` on prefix-tree rows: summary, --path N, folded shared prefixes, HTML <details>."""

from __future__ import annotations

import re

import pytest

from sftdata.cli import main as cli_main
from sftdata.show import tree_paths
from sftdata.testing.tokenizers import build_tokenizer
from sftdata.masking.tree import IGNORE_INDEX, unroll
from sftdata_train.testing import prepare_tree_dir


@pytest.fixture(scope="module")
def tree_dir(tmp_path_factory):
    tok = build_tokenizer("qwen3")
    root = tmp_path_factory.mktemp("show")
    tok.save_pretrained(root / "tok")
    msgs = [{"role": "system", "content": "policy " * 60}]
    for i in range(4):
        msgs += [{"role": "user", "content": f"question {i} " * 4}, {"role": "assistant", "content": f"answer {i} " * 4}]
    ds = prepare_tree_dir([{"messages": msgs}], root / "data", tok)
    assert ds[0]["parent"], "the fixture must be a tree row"
    return root, tok, ds[0]


def _show(capsys, root, *argv):
    rc = cli_main(["show", str(root / "data"), "--tokenizer", str(root / "tok"), "--no-color", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_tree_paths_match_unroll(tree_dir):
    _, _, row = tree_dir
    paths = tree_paths(row["labels"], row["parent"])
    linear = unroll(row)
    assert len(paths) == len(linear)
    for p, (ids, labels) in zip(paths, linear):
        assert p.length == len(ids)
        assert p.trained == sum(1 for y in labels if y != IGNORE_INDEX)
        assert p.end - p.start == p.length - p.shared
    assert sum(p.end - p.start for p in paths) == len(row["input_ids"])


def test_summary_and_folded_paths(tree_dir, capsys):
    root, tok, row = tree_dir
    n = len(unroll(row))
    rc, out, _ = _show(capsys, root)
    assert rc == 0
    assert f"a prefix tree of {n} sequences" in out and "shared by every path" in out
    assert len(re.findall(r"^--- path \d+/", out, re.M)) == n
    assert len(re.findall(r"tokens shared with path \d+ folded", out)) == n - 1
    rc, unfolded, _ = _show(capsys, root, "--unfold")
    assert rc == 0 and len(out) < len(unfolded)
    assert unfolded.count("policy policy") >= n * 10  # every path repeats the system prompt when unfolded
    assert out.count("policy policy") < unfolded.count("policy policy") / (n - 1)


def test_path_n_prints_that_sequence_whole(tree_dir, capsys):
    root, tok, row = tree_dir
    linear = unroll(row)
    for k, (ids, labels) in enumerate(linear, 1):
        rc, out, _ = _show(capsys, root, "--path", k)
        assert rc == 0
        head, text = out.split("\n", 1)
        assert f"path {k}/{len(linear)}" in head
        text = text[:-1]  # print's newline
        assert text.replace("⟦", "").replace("⟧", "") == tok.backend_tokenizer.decode(ids, skip_special_tokens=False)
        trained = "".join(re.findall(r"⟦(.*?)⟧", text, re.S))
        want = tok.backend_tokenizer.decode([t for t, y in zip(ids, labels) if y != IGNORE_INDEX], skip_special_tokens=False)
        assert trained == want
    rc, out, err = _show(capsys, root, "--path", len(linear) + 1)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "out of range" in err


def test_html_folds_shared_prefixes(tree_dir, capsys, tmp_path):
    root, tok, row = tree_dir
    n = len(unroll(row))
    page_file = tmp_path / "t.html"
    rc, _, _ = _show(capsys, root, "--html", page_file)
    assert rc == 0
    page = page_file.read_text()
    assert len(re.findall(r"<details id='p\d+'", page)) == n
    assert len(re.findall(r"<details class='s'>", page)) == n - 1
    # every stored token once (plus a short context per path), not once per path
    assert page.count('class="u" title=') + page.count('class="t" title=') <= len(row["input_ids"]) + 32 * (n - 1)
    one = tmp_path / "p1.html"
    assert _show(capsys, root, "--path", 1, "--html", one)[0] == 0
    assert 'class="t"' in one.read_text()
