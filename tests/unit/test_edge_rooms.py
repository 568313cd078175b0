"""The edge's rooms import one way: web → bff, gateway, fulfilment; bff, gateway and fulfilment → none
of the others (only edge/server.py, the composition root, wires them).  No import cycle inside the
edge."""

from __future__ import annotations

import ast
from pathlib import Path

EDGE = Path(__file__).resolve().parents[2] / "edge"
# room → rooms it may import
ALLOWED: dict[str, set[str]] = {
    "gateway": set(),
    "bff": set(),
    "fulfilment": set(),
    "web": {"bff", "gateway", "fulfilment"},
}


def _module(path: Path) -> str:
    rel = path.relative_to(EDGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _edge_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n for n in names if n == "edge" or n.startswith("edge.")}
    return out


def _graph() -> dict[str, set[str]]:
    return {_module(p): _edge_imports(p) for p in EDGE.rglob("*.py")}


def test_rooms_import_one_way() -> None:
    bad = []
    for module, imports in _graph().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in ALLOWED:
            continue
        room = parts[1]
        for imported in imports:
            target = imported.split(".")[1] if "." in imported else ""
            if target != room and target not in ALLOWED[room]:
                bad.append(f"{module} imports {imported}")
    assert not bad, bad


def test_no_import_cycle_in_the_edge() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert {
        "edge.gateway.config",
        "edge.fulfilment.use_case",
        "edge.web.app",
        "edge.web.dashboard",
    } <= graph.keys()
