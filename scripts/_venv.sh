# Sourced by scripts/up and scripts/test: create .venv (once) and install the project into it.
# torch is pinned for installs run here (a CPU wheel); set TORCH_SPEC to choose another build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
extras="$1"
stamp=".venv/.installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}" -e ".[$extras]"
  touch "$stamp"
fi
