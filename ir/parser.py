"""Parse the text form of graphs (see `ir.printer`) back into a `Graph`.

Weights declared in the header get zero-filled data unless `weights` supplies arrays, so tests
can write graphs as text. Every type written on an equation is checked against inference.
"""

from __future__ import annotations

import ast
import re

import numpy as np

from ir.errors import IRError
from ir.graph import Graph
from ir.types import TensorType, parse_type

_NAME = r"%([A-Za-z0-9_.]+)"
_HEADER = re.compile(r"^graph\s+([A-Za-z0-9_.]+)\((.*?)\)(?:\s+weights\((.*)\))?\s*\{$")
_EQUATION = re.compile(r"^(.+?)\s=\s([A-Za-z0-9_]+)(\[.*\])?\((.*)\)\s*(?:#\s*([^\n]*))?$", re.DOTALL)


def _split_top(text: str) -> list[str]:
    """Split on commas not inside brackets or parentheses."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _typed(decl: str, where: str) -> tuple[str, TensorType]:
    m = re.fullmatch(rf"\s*{_NAME}\s*:\s*(.+)", decl)
    if not m:
        raise IRError(f"{where}: expected '%name: type', got {decl!r}")
    return m.group(1), parse_type(m.group(2))


def _attrs(text: str | None, where: str, weights: dict | None) -> dict:
    if not text:
        return {}
    attrs = {}
    for part in _split_top(text[1:-1]):
        key, eq, value = part.partition("=")
        if not eq:
            raise IRError(f"{where}: attribute {part!r} is not key=value")
        if value.lstrip().startswith("graph "):  # a subgraph (cond's branches)
            attrs[key.strip()] = parse_graph(value, weights)
            continue
        try:
            attrs[key.strip()] = _literal(value.strip())
        except (ValueError, SyntaxError, TypeError):
            raise IRError(f"{where}: attribute value {value.strip()!r} is not a literal") from None
    return attrs


def _literal(text: str):
    """A Python literal, where floats may also be inf, -inf and nan (as repr prints them)."""

    def value(node):
        if isinstance(node, ast.Name) and node.id in ("inf", "nan"):
            return float(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = value(node.operand)
            if not isinstance(inner, (int, float)) or isinstance(inner, bool):
                raise ValueError("a sign before something other than a number")
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [value(e) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        return ast.literal_eval(node)

    return value(ast.parse(text, mode="eval").body)


def parse_graph(text: str, weights: dict[str, np.ndarray] | None = None) -> Graph:
    """The graph written in `text`."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        raise IRError("empty graph text")
    header = _HEADER.match(lines[0])
    if not header:
        raise IRError(f"line 1: expected 'graph name(%x: type, ...) {{', got {lines[0]!r}")
    graph = Graph(header.group(1))
    env = {}
    for decl in _split_top(header.group(2)):
        name, t = _typed(decl, "line 1")
        env[name] = graph.add_input(name, t)
    for decl in _split_top(header.group(3) or ""):
        name, t = _typed(decl, "line 1")
        data = (weights or {}).get(name)
        if data is None:
            data = np.zeros(tuple(d if isinstance(d, int) else 1 for d in t.shape), t.dtype.np)
        if tuple(data.shape) != t.shape:
            raise IRError(f"weight %{name}: data of shape {data.shape} for declared type {t}")
        env[name] = graph.add_weight(name, data.astype(t.dtype.np, copy=False))
    number = 1
    while number < len(lines):
        line = lines[number]
        number += 1
        where = f"line {number}"
        if line.count("{") > line.count("}"):  # an equation with subgraphs continues to its close
            depth = line.count("{") - line.count("}")
            while depth > 0 and number < len(lines):
                depth += lines[number].count("{") - lines[number].count("}")
                line += "\n" + lines[number]
                number += 1
        if line == "}":
            break
        if line.startswith("return"):
            names = re.findall(_NAME, line)
            missing = [n for n in names if n not in env]
            if missing:
                raise IRError(f"{where}: return of undefined %{missing[0]}")
            graph.set_outputs([env[n] for n in names])
            continue
        m = _EQUATION.match(line)
        if not m:
            raise IRError(f"{where}: expected '%out: type = op[attrs](%in, ...)', got {line!r}")
        outs = [_typed(d, where) for d in _split_top(m.group(1))]
        args = []
        for arg in _split_top(m.group(4)):
            if arg == "_":
                args.append(None)
                continue
            am = re.fullmatch(_NAME, arg)
            if not am or am.group(1) not in env:
                raise IRError(f"{where}: {arg!r} is not a defined value")
            args.append(env[am.group(1)])
        try:
            values = graph.add_node(
                m.group(2),
                args,
                _attrs(m.group(3), where, weights),
                names=[n for n, _ in outs],
                scope=m.group(5) or "",
            )
        except IRError as e:
            raise IRError(f"{where}: {e}") from None
        for (name, declared), value in zip(outs, values, strict=True):
            if declared != value.type:
                raise IRError(f"{where}: %{name} is declared {declared} but {m.group(2)} gives {value.type}")
            env[name] = value
    return graph
