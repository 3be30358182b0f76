"""The core stays pure: only the addon module may import mitmproxy."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "addon" / "copilot_pool"
MITMPROXY_LAYER = {"addon.py", "guard.py", "statuspage.py", "statewatch.py"}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_core_modules_do_not_import_mitmproxy():
    core = [p for p in PACKAGE.glob("*.py") if p.name not in MITMPROXY_LAYER]
    assert len(core) >= 7
    offenders = [p.name for p in core if "mitmproxy" in imported_modules(p)]
    assert offenders == []


def test_every_module_logs_to_the_redacted_logger():
    """The redaction filter sits on the `copilot_pool` logger; a child logger's records would bypass it."""
    for path in PACKAGE.glob("*.py"):
        for assign in ast.walk(ast.parse(path.read_text())):
            node = getattr(assign, "value", None) if isinstance(assign, ast.Assign) else None  # `log = getLogger(...)`
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger":
                args = node.args
                assert not args or (isinstance(args[0], ast.Constant) and args[0].value == "copilot_pool") or (
                    isinstance(args[0], ast.Name) and args[0].id == "LOGGER_NAME"
                ), f"{path.name}: log to logging.getLogger(LOGGER_NAME)"
