"""The README stays true: its presets table is the registry's, its Quick
start names real commands, and its Python examples run as written."""

import json
import re
import subprocess
import sys

import keras
import pytest
from conftest import REPO
from conftest import subprocess_env

README = (REPO / "README.md").read_text(encoding="utf-8")


def python_blocks(text):
    """The README's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)\n```", text, re.S)


def test_readme_presets_table_matches_the_registry():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "presets_table.py")],
        capture_output=True, text=True, check=True, env=subprocess_env(TF_CPP_MIN_LOG_LEVEL="3"),
    )
    table = result.stdout.strip()
    assert table.count("\n") == 39  # header, rule, 38 presets
    assert table in README, "README's Presets table is stale: rerun tools/presets_table.py"


def test_readme_quick_start_commands_exist():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```shell\n(.*?)\n```", quick_start, re.S)
    assert len(commands) == 2
    assert "pip install ." in commands[0] and "python tools/train.py" in commands[0]
    assert "bash tests/run.sh" in commands[1]
    assert (REPO / "tools" / "train.py").exists() and (REPO / "tests" / "run.sh").exists()


# Runs every block in one interpreter, in order, in a scratch directory, and
# reports the block that failed. The README's first example sets up the data
# (the bundled digits) that later examples use.
RUNNER = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__readme__"}
for number, block in enumerate(blocks, 1):
    try:
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"README python block {number} failed:\\n{block}", file=sys.stderr)
        sys.exit(1)
print(f"ran {len(blocks)} blocks")
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the README's examples use TF export")
def test_readme_python_examples_run_as_written(tmp_path):
    blocks = python_blocks(README)
    assert len(blocks) >= 5
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    # HOME in tmp_path: what the examples write under ~ (the offline event
    # set in ~/.keras/datasets) stays out of the user's home.
    result = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "blocks.json")],
                            cwd=tmp_path, env=subprocess_env(HOME=str(tmp_path)),
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"ran {len(blocks)} blocks" in result.stdout
