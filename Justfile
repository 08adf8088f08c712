# `pip install rust-just`, then `just demo` or `just test` on a fresh machine.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
py := venv / "bin/python"
# A CPU build of torch here; on a GPU host set TORCH_SPEC to the build you want
# (or pre-install torch in .venv: setup never replaces an importable torch).
torch_spec := env_var_or_default("TORCH_SPEC", "torch==2.13.0")

# Create .venv, install torch first, then the project with its dev extra.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp="{{venv}}/.installed"
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then exit 0; fi
    [ -x "{{py}}" ] || python3 -m venv "{{venv}}"
    "{{py}}" -m pip install -q --upgrade pip
    "{{py}}" -c "import torch" 2>/dev/null || "{{py}}" -m pip install -q "{{torch_spec}}"
    "{{py}}" -m pip install -q -e '.[dev]'
    touch "$stamp"

# Run the indexing job on generated demo videos with a random demo checkpoint.
demo: setup
    "{{py}}" -m jobs.demo

# The test suite (what CI runs).
test *ARGS: setup
    "{{py}}" -m pytest -q {{ARGS}}

# Benchmarks: model and decode, side by side with their baselines.
bench: setup
    "{{py}}" bench/model.py
    "{{py}}" bench/decode.py
