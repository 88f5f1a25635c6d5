"""Rewrite an assert-style test so that every verdict-bearing operation goes
through the checks of rewards/assert_harness.py (the `_asy_*` names it puts
in the test's namespace): comparisons, arithmetic, `not`, the values of
`and`/`or`, calls (builtins get plain arguments only) and `assert` itself.

Done on the hub, not in the sandbox: the sandboxed run then needs no `ast`
import (one less cost per test), and the rewritten source is plain Python
that any Python 3 the sandbox runs compiles.
"""
from __future__ import annotations

import ast


def _helper(name, *args):
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


class _Rewrite(ast.NodeTransformer):
    """Route every verdict-bearing operation of the test through the checks."""

    def visit_Assert(self, node):
        return ast.copy_location(ast.Expr(value=_helper("_asy_assert", self.visit(node.test))), node)

    def visit_Compare(self, node):
        self.generic_visit(node)
        ops = ast.Constant(value=tuple(type(op).__name__ for op in node.ops))
        return ast.copy_location(_helper("_asy_cmp", ops, node.left, *node.comparators), node)

    def visit_BinOp(self, node):
        self.generic_visit(node)
        return ast.copy_location(_helper("_asy_bin", ast.Constant(value=type(node.op).__name__), node.left, node.right), node)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return ast.copy_location(_helper("_asy_not", node.operand), node)
        node.operand = _helper("_asy_plain", node.operand)
        return node

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        node.values = [_helper("_asy_plain", v) for v in node.values]
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "super":
            return node  # zero-argument super() must stay a literal call
        return ast.copy_location(ast.Call(func=ast.Name(id="_asy_call", ctx=ast.Load()),
                                          args=[node.func, *node.args], keywords=node.keywords), node)


def rewrite_test(source: str) -> str:
    """`source` with its verdicts routed through the harness's checks;
    SyntaxError if it does not parse."""
    tree = _Rewrite().visit(ast.parse(source, "<test>", "exec"))
    return ast.unparse(ast.fix_missing_locations(tree))
