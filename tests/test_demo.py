import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_end_to_end():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--once", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in ("alice", "bob", "carol"):
        assert f"served by {name}" in out
    cooldown = out.split("2. carol is rate limited")[1].split("3. a streamed")[0]
    assert cooldown.count(": 200, served by") == 6 and "served by carol" not in cooldown
    assert "carol 429" in cooldown and re.search(r"carol cooling until \S+ \((30|29)s\)", out)
    assert out.count("chunk ") == 4
    assert "gho_demo_" not in out and "tid=" not in out
