"""Is a per-element branch free of Python effects?  Read from its source.

If-conversion (`transforms.ifconvert`) replaces the guards of a loop's
``if``/``else`` by a ``where`` over both branches.  What the tape cannot see
is Python state a branch changes: a flag it flips, a list it appends to, a
counter modulo 3, whose later use would then follow trace A's branch
pattern on every call.  Three forced traces catch most of that by
disagreeing; this check rules it out where they could agree by chance: the
branch must be an expression (``a if p else b``) or an ``if``/``else``
whose two suites only assign, to the same targets, with no call that could
change state (only functions of a module, ``np.sin``, and a few pure
builtins), and no walrus.
"""
from __future__ import annotations

import ast
import functools
import linecache
import types
from typing import Any

PURE_BUILTINS = frozenset({"abs", "min", "max", "float", "int", "pow", "round", "len"})


def effect_free(file: str, line: int, namespace: dict[str, Any]) -> bool:
    """Whether the branch whose condition is read at ``file:line`` changes
    nothing but the values both of its sides assign (``namespace``: the
    globals of the function, to tell modules from objects)."""
    tree = _parsed(file)
    if tree is None:
        return False
    found = False
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp)) and \
                node.test.lineno <= line <= (node.test.end_lineno or node.test.lineno):
            found = True
            if not _alike(node, namespace):
                return False
    return found


@functools.lru_cache(maxsize=64)
def _parsed(file: str) -> ast.AST | None:
    source = "".join(linecache.getlines(file))
    if not source:
        return None
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _alike(node: ast.If | ast.IfExp, namespace: dict[str, Any]) -> bool:
    if isinstance(node, ast.IfExp):
        return _pure(node, namespace)
    if not node.orelse or not _pure(node.test, namespace):
        return False
    targets = []
    for suite in (node.body, node.orelse):
        assigned = set()
        for stmt in suite:
            if isinstance(stmt, ast.Pass):
                continue
            if not isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)) \
                    or not _pure(stmt, namespace) or not _carries_only_sums(stmt):
                return False
            for target in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]):
                assigned.add(ast.dump(target))
        targets.append(assigned)
    return targets[0] == targets[1]


def _carries_only_sums(stmt: ast.Assign | ast.AugAssign | ast.AnnAssign) -> bool:
    """A name or element (``s``, ``y[i]``: no attribute, no unpacking) that
    the statement reads as well as writes is carried across iterations; only
    a sum may be (``s += t``, ``s = s - t``), which the conversion checks link
    by link.  ``odd = not odd`` or ``k = (k + 1) % 3`` is state a where
    cannot hold."""
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    if len(targets) != 1 or not isinstance(targets[0], (ast.Name, ast.Subscript)):
        return False
    target = targets[0]
    name = _root(target)
    if name is None:
        return False
    value = stmt.value
    if value is None:
        return True
    if isinstance(stmt, ast.AugAssign):
        return isinstance(stmt.op, (ast.Add, ast.Sub)) and not _reads(value, name)
    if not _reads(value, name):
        return True
    if not (isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.Sub))):
        return False
    same = ast.dump(target, annotate_fields=False).replace("Store()", "Load()")
    if isinstance(value.op, ast.Add) and not _reads(value.left, name):
        return ast.dump(value.right, annotate_fields=False) == same  # t + s
    # s + t, or s + t - u + ...: the target read once, leftmost in a run of
    # additions and subtractions (a link of the chain per term)
    node = value
    while isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        if _reads(node.right, name):
            return False
        if ast.dump(node.left, annotate_fields=False) == same:
            return True
        node = node.left
    return False


def _root(target: ast.AST) -> str | None:
    while isinstance(target, ast.Subscript):
        target = target.value
    return target.id if isinstance(target, ast.Name) else None


def _reads(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _pure(node: ast.AST, namespace: dict[str, Any]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, (ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.Await, ast.Lambda)):
            return False
        if isinstance(sub, ast.Call) and not _pure_callee(sub.func, namespace):
            return False
    return True


def _pure_callee(func: ast.AST, namespace: dict[str, Any]) -> bool:
    if isinstance(func, ast.Name):
        return func.id in PURE_BUILTINS and func.id not in namespace
    if isinstance(func, ast.Attribute):  # np.sin, np.linalg.norm: a module's function
        base = func.value
        while isinstance(base, ast.Attribute):
            base = base.value
        return isinstance(base, ast.Name) and isinstance(namespace.get(base.id), types.ModuleType)
    return False


def namespace_of(file: str) -> dict[str, Any]:
    """The globals of the loaded module whose source is ``file`` ({} if none)."""
    import os
    import sys
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and os.path.abspath(path) == os.path.abspath(file):
            return vars(module)
    return {}
