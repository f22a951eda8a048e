"""The README stays true: its presets table is the registry's."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_presets_table_matches_the_registry():
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "presets_table.py")],
        capture_output=True, text=True, check=True,
        env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    table = result.stdout.strip()
    assert table.count("\n") == 32  # header, rule, 31 presets
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as file:
        readme = file.read()
    assert table in readme, "README's Presets table is stale: rerun tools/presets_table.py"


def test_readme_quick_start_commands_exist():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as file:
        readme = file.read()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "python tools/train.py" in quick_start and "bash tests/run.sh" in quick_start
    assert os.path.exists(os.path.join(REPO, "tools", "train.py"))
    assert os.path.exists(os.path.join(REPO, "tests", "run.sh"))
