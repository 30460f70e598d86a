# Sourced by scripts/up, scripts/test and scripts/bench: create .venv (once) and install the project into it with
# the tested versions of everything (constraints.txt, made by scripts/lock). torch is pinned for installs run here
# (the version the suite passed with); set TORCH_SPEC to choose another build or version, e.g. a CUDA wheel.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
say() { echo "rerank-server: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv"
  "$python" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
extras="$1"
stamp=".venv/.installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  torch_spec="${TORCH_SPEC:-torch==2.13.0}"
  constraints=constraints.txt
  if [ -n "${TORCH_SPEC:-}" ]; then  # the caller's torch wins over the tested one
    grep -v -i '^torch==' constraints.txt > .venv/constraints-own-torch.txt
    constraints=.venv/constraints-own-torch.txt
  fi
  started=$SECONDS
  say "installing $torch_spec and the project with [$extras] at the tested versions ($constraints); the first time takes 1-3 minutes..."
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -c "$constraints" "$torch_spec" -e ".[$extras]"
  touch "$stamp"
  say "installed in $((SECONDS - started)) s"
fi
