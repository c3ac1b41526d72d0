"""Issue 19's size and hygiene counts for a package (default ``sftdata``), with the ``ast``.

Prints: public functions/classes without a docstring (a name, or a method of a class, not
starting with ``_``, not nested in a function), functions over 80 lines (docstring included),
files over 400 lines, and private names reached across modules (``from .x import _name``, or
``name._attr`` on anything but ``self``/``cls``: the latter also lists third-party privates).

Usage: ``python scripts/code_metrics.py [PACKAGE_DIR ...]``
"""

from __future__ import annotations

import ast
import pathlib
import sys

MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 400


def scan(root: pathlib.Path) -> dict[str, list[str] | int]:
    """The counts of one package directory (see the module docstring)."""
    out: dict = {"public": 0, "nodoc": [], "long": [], "big": [], "private": []}

    def visit(node: ast.AST, path: pathlib.Path, prefix: str, in_func: bool) -> None:
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + ch.name
                if not in_func and not any(part.startswith("_") for part in name.split(".")):
                    out["public"] += 1
                    if ast.get_docstring(ch) is None:
                        out["nodoc"].append(f"{path}:{ch.lineno} {name}")
                if not isinstance(ch, ast.ClassDef) and ch.end_lineno - ch.lineno + 1 > MAX_FUNCTION_LINES:
                    out["long"].append(f"{path}:{ch.lineno} {name} {ch.end_lineno - ch.lineno + 1}")
                visit(ch, path, name + ".", in_func or not isinstance(ch, ast.ClassDef))
            else:
                visit(ch, path, prefix, in_func)

    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_FILE_LINES:
            out["big"].append(f"{path} {text.count(chr(10))}")
        tree = ast.parse(text)
        visit(tree, path, "", False)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(root.name)):
                out["private"] += [f"{path}:{node.lineno} from {'.' * node.level}{node.module or ''} import {a.name}"
                                   for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id not in ("self", "cls")):
                out["private"].append(f"{path}:{node.lineno} {node.value.id}.{node.attr}")
    return out


def main(argv: list[str]) -> int:
    """Print the counts of every package directory in ``argv`` (default ``sftdata``); returns 0."""
    for arg in argv or ["sftdata"]:
        r = scan(pathlib.Path(arg))
        print(f"{arg}: {r['public']} public functions/classes, {len(r['nodoc'])} without a docstring")
        print(*(f"  {x}" for x in r["nodoc"]), sep="\n") if r["nodoc"] else None
        print(f"{arg}: {len(r['long'])} functions over {MAX_FUNCTION_LINES} lines")
        print(*(f"  {x}" for x in r["long"]), sep="\n") if r["long"] else None
        print(f"{arg}: {len(r['big'])} files over {MAX_FILE_LINES} lines")
        print(*(f"  {x}" for x in r["big"]), sep="\n") if r["big"] else None
        print(f"{arg}: {len(r['private'])} private names reached across modules")
        print(*(f"  {x}" for x in r["private"]), sep="\n") if r["private"] else None
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
