"""The README and the documentation site stay true: the presets table is the
registry's, the Quick start names real commands, every Python example of
the README and of each guide runs as written, every link of the README
leads somewhere, and the site builds with `mkdocs build --strict`."""

import importlib.util
import json
import re
import subprocess
import sys

import keras
import pytest
from conftest import REPO
from conftest import subprocess_env

README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = REPO / "docs"
# The README and every page of the site, as paths relative to the repository.
PAGES = ["README.md"] + sorted(p.relative_to(REPO).as_posix() for p in DOCS.rglob("*.md"))
PRESETS_PAGE = "docs/guides/presets.md"
# Python examples shown but not run (fence ```py, not ```python), per page:
# they need a file, data or hardware a test does not have (own-data.md: the
# file `kst-export` writes). Each is listed here, so that a new one is a
# decision, not an accident.
NOT_RUN = {"docs/guides/own-data.md": 1,
           # the preset directory that kst-convert-sdt writes from a V2 checkpoint
           "docs/guides/sdt-checkpoints.md": 1}
# The languages a code fence may name. Anything else (```python3, ```bash)
# would be skipped by the runner without anyone noticing.
FENCE_LANGUAGES = {"", "python", "py", "shell", "text"}


def read(page):
    return (REPO / page).read_text(encoding="utf-8")


def python_blocks(text):
    """A page's ```python blocks, in order."""
    return re.findall(r"^```python\n(.*?)\n```$", text, re.S | re.M)


def fences(text):
    """The info string of every opening code fence of a page."""
    infos, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            if not inside:
                infos.append(line[3:].strip())
            inside = not inside
    assert not inside, "a code fence is not closed"
    return infos


def test_presets_table_matches_the_registry():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "presets_table.py")],
        capture_output=True, text=True, check=True, env=subprocess_env(TF_CPP_MIN_LOG_LEVEL="3"),
    )
    table = result.stdout.strip()
    assert table.count("\n") == 45  # header, rule, 38 + 6 presets
    assert table in read(PRESETS_PAGE), (
        f"{PRESETS_PAGE}'s presets table is stale: rerun tools/presets_table.py")


def test_readme_quick_start_commands_exist():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```shell\n(.*?)\n```", quick_start, re.S)
    assert len(commands) == 2
    assert "pip install ." in commands[0] and "python tools/train.py" in commands[0]
    assert "bash tests/run.sh" in commands[1]
    assert (REPO / "tools" / "train.py").exists() and (REPO / "tests" / "run.sh").exists()


def test_readme_is_a_front_page():
    """Short, and in the order a first reader needs: what it is, how to start,
    own images, what is in the box, where to read on, dependencies."""
    assert len(README.encode("utf-8")) <= 12 * 1024, (
        f"README.md is {len(README.encode('utf-8')):,} bytes: move reference material into docs/")
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings == ["Quick start", "Your own images: predict, fine-tune, export",
                        "What is in the box", "Documentation", "Dependencies and why"]
    for program in ("kst-train", "kst-predict", "kst-export", "kst-analyze", "kst-convert-sdt"):
        assert program in README.split("## What is in the box", 1)[1]


def test_readme_links_lead_to_files_and_anchors():
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    assert len(links) >= 10
    for link in links:
        assert not link.startswith(("http://", "https://", "/")), link
        path, _, anchor = link.partition("#")
        target = REPO / path
        assert target.is_file(), f"README links to {link}: no such file"
        if anchor:
            # MkDocs' heading ids: lower case, punctuation dropped, spaces to dashes.
            slugs = {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h.strip().lower()))
                     for h in re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)}
            assert anchor in slugs, f"README links to {link}: no such heading"


def test_code_fences_are_known_and_not_run_examples_are_listed():
    not_run = {}
    for page in PAGES:
        infos = fences(read(page))
        unknown = set(infos) - FENCE_LANGUAGES
        assert not unknown, f"{page}: unknown code fence language {unknown}"
        if infos.count("py"):
            not_run[page] = infos.count("py")
    assert not_run == NOT_RUN
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "```python" not in quick_start and "```py" not in quick_start


# Runs a page's blocks in one interpreter, in order, in a scratch directory,
# and reports the block that failed. A page's first block sets up what its
# later blocks use (the bundled digits, a preset).
RUNNER = """
import json, sys, traceback
page, blocks = sys.argv[2], json.load(open(sys.argv[1]))
namespace = {"__name__": "__docs__"}
for number, block in enumerate(blocks, 1):
    try:
        exec(compile(block, f"{page} python block {number}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"{page} python block {number} failed:\\n{block}", file=sys.stderr)
        sys.exit(1)
print(f"ran {len(blocks)} blocks")
"""
PAGES_WITH_EXAMPLES = [page for page in PAGES if python_blocks(read(page))]


def test_the_examples_are_where_the_guides_are():
    assert {"README.md", "docs/guides/presets.md", "docs/guides/own-data.md",
            "docs/guides/edge-export.md", "docs/guides/events.md", "docs/guides/analysis.md",
            "docs/guides/layers.md"} <= set(PAGES_WITH_EXAMPLES)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the examples use TF export")
@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES)
def test_python_examples_run_as_written(page, tmp_path):
    blocks = python_blocks(read(page))
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    # HOME in tmp_path: what the examples write under ~ (the offline event
    # set in ~/.keras/datasets) stays out of the user's home.
    result = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "blocks.json"), page],
                            cwd=tmp_path, env=subprocess_env(HOME=str(tmp_path)),
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"ran {len(blocks)} blocks" in result.stdout


DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


@pytest.mark.skipif(not all(_installed(m) for m in DOCS_PACKAGES),
                    reason='the docs extra is not installed (pip install ".[docs]")')
def test_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: no broken link or anchor, no page left out of
    the navigation, no docstring the API reference cannot read."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, env=subprocess_env(NO_MKDOCS_2_WARNING="1"),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("keras_spiking_tf.from_preset", "keras_spiking_tf.export",
                 "keras_spiking_tf.training.trainer.TrainConfig", "keras_spiking_tf.layers.A2OS2A"):
        assert f'id="{name}"' in api, f"the API reference lacks {name}"
    for guide in ("presets", "own-data", "training", "sdt-checkpoints", "edge-export", "events",
                  "analysis", "performance"):
        assert (tmp_path / "site" / "guides" / guide / "index.html").is_file()
