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
