"""The package's import graph: every ``import`` of a ``vidpred`` module, at module level or inside a function,
read from the source (nothing is imported), with the cycles in it and each file's line count.

    python tools/import_graph.py            # edges, cycles, line counts (exit 1 on a cycle)
    python tools/import_graph.py --json     # the same as JSON

An import of ``vidpred.a.b`` (or ``from vidpred.a import b`` where ``b`` is a module) is an edge to that
module, not to the packages above it: loading them is Python's mechanics, not a dependency the code chose.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "vidpred"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """{dotted name: file} for every module of the package."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` (file ``path``) imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (here[: len(here) - node.level + 1] if node.level else []) + (node.module or "").split(".")
            base = ".".join(p for p in base if p)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import vidpred.a.b.func`-like names: the module part
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return sorted(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    lines = {name: len(path.read_text().splitlines()) for name, path in known.items()}
    found = cycles(graph)
    if args.json:
        print(json.dumps({"edges": {k: sorted(v) for k, v in graph.items()}, "cycles": found, "lines": lines}, indent=1))
    else:
        for name in known:
            print(f"{lines[name]:5d}  {name} -> {', '.join(sorted(graph[name])) or '-'}")
        print(f"\n{len(found)} cycle(s)" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
        print(f"longest file: {max(lines.values())} lines ({max(lines, key=lines.get)})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
