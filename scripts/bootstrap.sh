# Sourced by scripts/run and scripts/test: make .venv (Python >= 3.12) and install the project into it, once
# per change of pyproject.toml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python_312() {
    for py in python3 python3.12 python3.13; do
        if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            echo "$py"
            return
        fi
    done
    echo "copilot-pool needs Python >= 3.12 (mitmproxy 12); with pyenv, .python-version selects 3.12" >&2
    exit 1
}

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || "$(python_312)" -m venv .venv
    echo "installing copilot-pool and its dependencies into .venv ..." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' >&2
    rm -f .venv/.installed-*
    touch "$stamp"
fi
