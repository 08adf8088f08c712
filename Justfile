# `pip install rust-just`, then `just demo` or `just test` on a fresh machine (Python 3.11 or 3.12).
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
py := venv / "bin/python"
# The Python that creates .venv (PYTHON=python3.12 just setup); its minor version picks the lock.
python := env_var_or_default("PYTHON", "python3")

# Create .venv and install exactly the versions in requirements/lock-py3XX.txt (the running
# Python's minor version): torch first, then the project with its dev extra. The torch pin is
# the lock's torch line; on a GPU host set TORCH_SPEC to the CUDA build of that version (e.g.
# TORCH_SPEC="torch==2.13.0" with PIP_INDEX_URL at the CUDA wheels) or pre-install it in .venv:
# setup never replaces an importable torch. Reruns when pyproject.toml or the lock changes.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x "{{py}}" ] || "{{python}}" -m venv "{{venv}}"
    minor=$("{{py}}" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
    lock="requirements/lock-py${minor}.txt"
    if [ ! -f "$lock" ]; then
        echo "error: no lock for Python ${minor:0:1}.${minor:1} ($lock): supported are" \
             "$(ls requirements/lock-py3*.txt | sed -E 's/.*lock-py3([0-9]+).txt/3.\1/' | xargs)." \
             "Use one (PYTHON=python3.12 just setup, after rm -r .venv) or make a lock: see README, Install." >&2
        exit 1
    fi
    stamp="{{venv}}/.installed"
    want=$(cat pyproject.toml "$lock" | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
    "{{py}}" -m pip install -q --upgrade pip
    torch_spec="${TORCH_SPEC:-$(grep -E '^torch==' "$lock")}"
    "{{py}}" -c "import torch" 2>/dev/null || "{{py}}" -m pip install -q -c "$lock" "$torch_spec"
    "{{py}}" -m pip install -q -c "$lock" -e '.[dev]'
    # the reference PDQ for tests/test_xclip_core_pdq.py: an sdist only, built against the Cython
    # and numpy installed above (pip's isolated build env would fetch its own)
    "{{py}}" -c "import pdqhash" 2>/dev/null || "{{py}}" -m pip install -q --no-build-isolation "pdqhash==0.2.8"
    echo "$want" > "$stamp"

# Rewrite the running .venv's lock from what is installed (after upgrading and a green `just test`).
lock:
    #!/usr/bin/env bash
    set -euo pipefail
    minor=$("{{py}}" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
    lock="requirements/lock-py${minor}.txt"
    { echo "# Exact versions the test suite passed with on Python ${minor:0:1}.${minor:1} (just lock; README, Install)."
      echo "# torch is pinned without its build tag (+cpu/+cu12x): the same line fits CPU and GPU builds."
      "{{py}}" -m pip freeze --exclude-editable | grep -viE '^(xclip-index|pip|setuptools|wheel)==' \
        | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > "$lock"
    echo "wrote $lock"

# Run the indexing job on generated demo videos with a random demo checkpoint.
demo: setup
    "{{py}}" -m jobs.demo

# Lint: ruff with the rules in pyproject.toml [tool.ruff] (never `ruff format`).
lint: setup
    "{{py}}" -m ruff check .

# The test suite (what CI runs): lint first, then pytest.
test *ARGS: setup lint
    "{{py}}" -m pytest -q {{ARGS}}

# Benchmarks: model and decode, side by side with their baselines.
bench: setup
    "{{py}}" bench/model.py
    "{{py}}" bench/decode.py
