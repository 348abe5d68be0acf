"""The package supports Python 3.9 (``requires-python``), whose types have no ``|``: a union
written ``X | Y`` outside an annotation is evaluated at import and raises TypeError there. Two
module-level aliases did (``repair._Changes``, ``writer._Queued``) before this test; every
module-level assignment is checked."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "repairwheel"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _is_type(node: ast.expr) -> bool:
    """A subscripted generic, ``None``, a builtin type or a CapWords name (not a constant
    such as ``re.I`` or ``os.O_CREAT``, whose ``|`` is an int's)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type(node.left) or _is_type(node.right)
    if isinstance(node, ast.Subscript):
        return True
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Name):
        return _cap_words(node.id) or node.id in {"int", "str", "bytes", "float", "bool"}
    if isinstance(node, ast.Attribute):
        return _cap_words(node.attr)
    return False


def _cap_words(name: str) -> bool:
    name = name.lstrip("_")
    return name[:1].isupper() and any(c.islower() for c in name)


def _runtime_unions(tree: ast.Module) -> list[int]:
    lines = []
    for statement in tree.body:
        value = statement.value if isinstance(statement, (ast.Assign, ast.AnnAssign)) else None
        if value is None:
            continue
        for node in ast.walk(value):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and _is_type(node):
                lines.append(node.lineno)
                break
    return lines


@pytest.mark.parametrize("module", MODULES, ids=[str(m.relative_to(PACKAGE)) for m in MODULES])
def test_no_union_of_types_is_evaluated_at_import(module: Path) -> None:
    assert _runtime_unions(ast.parse(module.read_text())) == []


def test_the_check_finds_a_union_evaluated_at_import() -> None:
    source = "A = tuple[int, int] | None\nB = 3 | 4\nC = re.I | re.M\nD = zipfile.ZipInfo | None\n"
    assert _runtime_unions(ast.parse(source)) == [1, 4]
