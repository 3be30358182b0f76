"""The layers stay what the folders say: a pure core, an asyncio runtime without HTTP, mitmproxy only in mitm/."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "addon" / "copilot_pool"
# What each layer may not import. The core does no I/O of any kind and never waits.
FORBIDDEN = {
    "core": {"asyncio", "httpx", "mitmproxy", "os", "pathlib", "socket", "subprocess", "threading", "sqlite3", "redis"},
    "runtime": {"httpx", "mitmproxy"},
    "observe": {"asyncio", "httpx", "mitmproxy"},
}
LAYERS = ["core", "runtime", "github", "observe", "mitm"]  # each may import only from those before it


def imported_modules(path: Path) -> set[str]:
    """Top-level names of absolute imports, and the package-relative module of relative ones ('..core.pool'
    from runtime/x.py -> 'copilot_pool.core.pool')."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
            elif node.level:
                package = path.relative_to(PACKAGE.parent).parent.parts
                base = package[: len(package) - node.level + 1]
                modules.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
    return modules


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "copilot_pool" and len(parts) > 1 else None


def modules_in(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py")) if (PACKAGE / layer).is_dir() else [PACKAGE / f"{layer}.py"]


@pytest.mark.parametrize("layer", FORBIDDEN)
def test_layer_imports_nothing_forbidden(layer):
    offenders = {p.name: imported_modules(p) & FORBIDDEN[layer] for p in modules_in(layer)}
    assert len(offenders) >= 3 and {k: v for k, v in offenders.items() if v} == {}


def test_only_mitm_imports_mitmproxy():
    everywhere = [p for p in PACKAGE.rglob("*.py") if "mitm" not in p.relative_to(PACKAGE).parts]
    assert [p.name for p in everywhere if "mitmproxy" in imported_modules(p)] == []


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_earlier_layers(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    for path in modules_in(layer):
        used = {layer_of(m) for m in imported_modules(path)} - {None}
        assert used <= allowed, f"{path.relative_to(PACKAGE)} imports {used - allowed}"


def test_core_opens_no_files():
    for path in modules_in("core"):
        calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]
        assert not any(isinstance(c.func, ast.Name) and c.func.id == "open" for c in calls), path.name


def test_no_import_cycles():
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {m for m in imported_modules(path) if m.startswith("copilot_pool.") and m != name}

    def visit(node, stack):
        assert node not in stack, " -> ".join([*stack, node])
        for dep in graph.get(node, ()):
            visit(dep, [*stack, node])

    for node in graph:
        visit(node, [])


def test_every_module_logs_to_the_redacted_logger():
    """The redaction filter sits on the `copilot_pool` logger; a child logger's records would bypass it."""
    for path in PACKAGE.rglob("*.py"):
        for assign in ast.walk(ast.parse(path.read_text())):
            node = getattr(assign, "value", None) if isinstance(assign, ast.Assign) else None  # `log = getLogger(...)`
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger" and node.args:
                arg = node.args[0]
                assert isinstance(arg, ast.Name) and arg.id == "LOGGER_NAME", (
                    f"{path.name}: log to getLogger(LOGGER_NAME)"
                )
