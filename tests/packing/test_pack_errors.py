"""`sftdata pack` on inputs it cannot pack: one line naming the fix, exit 2, nothing written."""

from __future__ import annotations

import pytest

from sftdata.cli import main as cli_main
from sftdata.masking.tree import IGNORE_INDEX, TrieBuilder, linear_length
from sftdata_train.testing import tree_dataset


def _rows():
    b = TrieBuilder()
    b.add([1, 2, 3, 4, 5, 6], [IGNORE_INDEX] * 4 + [5, 6])
    b.add([1, 2, 3, 7, 8], [IGNORE_INDEX] * 3 + [7, 8])
    t = b.build()
    tree = dict(input_ids=t.input_ids, labels=t.labels, parent=t.parent, position_ids=t.position_ids,
                length=len(t.input_ids), linear_length=t.linear_length, source_index=0)
    path = dict(input_ids=[1, 9, 9], labels=[IGNORE_INDEX, 9, 9], parent=[], position_ids=[], length=3,
                linear_length=3, source_index=1)
    return [tree, path]


def _pack(capsys, *argv):
    rc = cli_main(["pack", *map(str, argv)])
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def crafted(monkeypatch):
    """``sftdata pack`` reads the given rows (a prepared dir holds stats.json, which crafted rows lack)."""
    import sftdata.output.load

    real = sftdata.output.load.load_output

    def use(rows):
        def load(path, **kw):
            return tree_dataset(rows) if str(path).endswith("crafted") else real(path, **kw)

        monkeypatch.setattr(sftdata.output.load, "load_output", load)

    return use


def test_pack_then_errors(tmp_path, capsys, crafted):
    src = tmp_path / "crafted"
    src.mkdir()
    crafted(_rows())
    packed = tmp_path / "packed"
    rc, err = _pack(capsys, src, "--max-length", 16, "--output", packed)
    assert rc == 0 and (packed / "pack_stats.json").is_file()

    # an already packed input
    again = tmp_path / "again"
    rc, err = _pack(capsys, packed, "--max-length", 16, "--output", again)
    assert rc == 2 and len(err) == 1 and "already packed" in err[0] and "sftdata prepare" in err[0]
    assert not again.exists()

    # an L that no row fits: nothing written, and an existing OUT left as it was with --overwrite
    rc, err = _pack(capsys, src, "--max-length", 2, "--output", packed, "--overwrite", "--truncation", "drop")
    assert rc == 2 and len(err) == 1 and "no row fits max_length=2" in err[0] and "--max-length" in err[0]
    assert "the shortest row has 3 tokens" in err[0]
    assert (packed / "pack_stats.json").is_file()
    rc, err = _pack(capsys, src, "--max-length", 1, "--output", tmp_path / "tiny", "--truncation", "turns")
    assert rc == 2 and len(err) == 1 and "no row fits" in err[0] and not (tmp_path / "tiny").exists()


@pytest.mark.parametrize("parent", [[0, 0, 1, 2, 3, 4, 2, 6], [-1, 0, 1, 2, 3, 4, 7, 6], [-1, 0, 1, 2, 3, 4, -3, 6]])
def test_a_tree_layout_the_planner_cannot_take(tmp_path, capsys, crafted, parent):
    rows = _rows()
    rows[0]["parent"] = parent
    src = tmp_path / "crafted"
    src.mkdir()
    crafted(rows)
    rc, err = _pack(capsys, src, "--max-length", 16, "--output", tmp_path / "out")
    assert rc == 2 and len(err) == 1 and "row 0: parent[" in err[0] and "sftdata prepare" in err[0]
    assert not (tmp_path / "out").exists()


def test_tree_columns_of_other_lengths(tmp_path, capsys, crafted):
    rows = _rows()
    rows[0]["position_ids"] = rows[0]["position_ids"][:-1]
    src = tmp_path / "crafted"
    src.mkdir()
    crafted(rows)
    rc, err = _pack(capsys, src, "--max-length", 16, "--output", tmp_path / "out")
    assert rc == 2 and len(err) == 1 and "row 0" in err[0] and "position_ids" in err[0]
    assert not (tmp_path / "out").exists()
    assert linear_length(_rows()[0]["parent"]) == _rows()[0]["linear_length"]
