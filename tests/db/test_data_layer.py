"""All runtime SQL lives in dialer/db/: no other module of the package holds a SQL statement or
fragment, or runs a query itself. Read from the source's syntax tree, so a comment or a
docstring that mentions SELECT does not count, and every string (f-strings too) does."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dialer

PACKAGE = Path(dialer.__file__).parent
DATA_LAYER = PACKAGE / "db"
QUERY_METHODS = {
    "fetch",
    "fetchrow",
    "fetchval",
    "execute",
    "executemany",
    "cursor",
    "copy_to_table",
    "copy_from_query",
    "copy_from_table",
    "copy_records_to_table",
}
SQL = re.compile(
    r"\bSELECT\b.*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+(\s+\w+)?\s+SET\b|\bDELETE\s+FROM\b"
    r"|\bCREATE\s+(TEMP\s+)?(TABLE|VIEW|INDEX)\b|\bALTER\s+TABLE\b|\bCASE\s+WHEN\b"
    r"|\bnow\(\)|::(text|int|bigint|jsonb|timestamptz|interval|float8)\b|\$\d+\b",
    re.S,
)


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant and f-string (its literal parts joined) that is not a docstring."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            found.append((node.lineno, text))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            found.append((node.lineno, node.value))
    return found


def _query_calls(tree: ast.AST) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.func.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in QUERY_METHODS
    ]


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = path.relative_to(PACKAGE.parent)
    found = [
        f"{where}:{line}: SQL {text[:60]!r}" for line, text in _strings(tree) if SQL.search(text)
    ]
    found += [f"{where}:{line}: runs a query (.{name})" for line, name in _query_calls(tree)]
    return found


def test_no_sql_outside_the_data_layer() -> None:
    outside = [p for p in PACKAGE.rglob("*.py") if DATA_LAYER not in p.parents]
    assert len(outside) > 40  # the scan reads the package, not an empty folder
    problems = [problem for path in sorted(outside) for problem in offences(path)]
    assert problems == []


def test_the_scan_finds_sql_where_it_is(tmp_path: Path) -> None:
    """The check can fail: a query, a fragment and a query call are each caught."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""A docstring may say SELECT x FROM y."""\n'
        "async def f(conn, n):\n"
        '    await conn.fetch(f"SELECT id FROM contacts WHERE id = {n}")\n'
        'WHERE = "c.next_attempt_at <= now()"\n'
    )
    found = "\n".join(f"{line}: {text}" for line, text in _strings(ast.parse(sample.read_text())))
    assert "SELECT id FROM contacts" in found and "now()" in found
    assert "docstring" not in found
    assert _query_calls(ast.parse(sample.read_text())) == [(3, "fetch")]
    assert any(SQL.search(t) for _, t in _strings(ast.parse(sample.read_text())))
    assert len([p for p in DATA_LAYER.glob("*.py") if offences(p)]) >= 6  # the layer has SQL
