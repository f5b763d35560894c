"""The package's layout stays as agreed: no import cycle, and no module over 400 lines (tools/import_graph.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    return module


def test_no_module_imports_a_module_that_imports_it_back():
    graph_tool = import_graph()
    known = graph_tool.modules()
    graph = {name: graph_tool.imports_of(name, path, known) for name, path in known.items()}
    assert graph_tool.cycles(graph) == []
    # the tool sees a cycle when there is one
    assert graph_tool.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_reads_in_under_400_lines():
    long = {name: len(path.read_text().splitlines()) for name, path in import_graph().modules().items()}
    assert {name: n for name, n in long.items() if n > 400} == {}
