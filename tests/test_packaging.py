"""The product as it is installed: wheel and sdist contents, the installed
copy under test, the `kst-*` programs and their checkout twins.

The wheel and sdist are built here, offline, from a copy of the package
source (nothing is written into the checkout).
"""

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO
from conftest import TOOL_MODULES
from conftest import imported_from_checkout
from conftest import subprocess_env
from conftest import tool_command

import keras_spiking_tf
from keras_spiking_tf.training.recipes import builtin_recipes
from keras_spiking_tf.training.recipes import load_recipe

PACKAGE = REPO / "keras_spiking_tf"
# The lines TensorFlow's C++ runtime prints at start-up (see cli/startup.py).
TF_LOG_MARKERS = ("oneDNN", "cuda", "cpu_feature_guard", "absl::InitializeLog", "I0000", "E0000")


def package_data_files():
    """Every non-Python file of the package source tree, as wheel paths."""
    return sorted(
        path.relative_to(REPO).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    )


def build(tmp_path, kind):
    """Builds a wheel or an sdist of a copy of the package; returns its path."""
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / "keras_spiking_tf",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    dist = tmp_path / "dist"
    dist.mkdir()
    code = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(dist)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True,
                            text=True, timeout=600, env=subprocess_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dist / result.stdout.strip().splitlines()[-1]


def test_package_data_list_is_not_empty():
    files = package_data_files()
    assert "keras_spiking_tf/training/recipes/cifar.json" in files
    assert "keras_spiking_tf/presets/presets.json" in files
    assert "keras_spiking_tf/presets/st_2_64_digits/model.weights.h5" in files


def test_wheel_carries_every_data_file_byte_for_byte(tmp_path):
    wheel = build(tmp_path, "wheel")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for relative in package_data_files():
            assert relative in names, f"{relative} is missing from the wheel"
            assert archive.read(relative) == (REPO / relative).read_bytes(), relative
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
    for program, module in TOOL_MODULES.items():
        assert f"{program} = keras_spiking_tf.cli.{module}:main" in entry_points.decode()


def test_sdist_carries_every_data_file(tmp_path):
    sdist = build(tmp_path, "sdist")
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        names = {name[len(root) + 1:] for name in archive.getnames()}
    missing = [f for f in package_data_files() if f not in names]
    assert not missing, f"missing from the sdist: {missing}"


def test_installed_package_has_its_recipes_and_presets():
    """Run against the installed copy (under tests/run.sh): what a user's
    `pip install .` gives must read its own data files."""
    assert builtin_recipes() == ["cifar", "cifar10_dvs", "digits", "dvs_gesture_t10",
                                 "dvs_gesture_t16", "event_digits", "finetune", "imagenet",
                                 "meta_spikeformer_finetune", "nmnist"]
    assert load_recipe("digits").epochs == 30
    presets = keras_spiking_tf.list_presets()
    assert len(presets) == 44 and presets["st_2_64_digits"]["weights_available"]
    assert presets["sdt_v2_8_512_imagenet"]["path"] is not None  # the V2 directories ship too
    assert presets["st_2_64_event_digits"]["weights_available"]


@pytest.mark.skipif(os.environ.get("KST_TEST_INSTALLED") != "1",
                    reason="checks the run of tests/run.sh against the installed package")
def test_the_installed_package_is_under_test():
    assert not imported_from_checkout(), keras_spiking_tf.__file__
    assert "site-packages" in keras_spiking_tf.__file__


@pytest.mark.parametrize("program", sorted(TOOL_MODULES))
def test_installed_programs_help_exits_zero_without_tensorflow_lines(program, tmp_path):
    result = subprocess.run([*tool_command(program), "--help"], cwd=tmp_path, env=subprocess_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert program in result.stdout.splitlines()[0]  # the program's own description comes first
    assert "--[no]tf_logs" in result.stdout and "--preset" in result.stdout
    output = result.stdout + result.stderr
    assert not [marker for marker in TF_LOG_MARKERS if marker in output], output[:2000]


@pytest.mark.parametrize("module", sorted(TOOL_MODULES.values()))
def test_checkout_tools_are_the_same_programs(module, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tools" / f"{module}.py"), "--help"],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--[no]tf_logs" in result.stdout
    output = result.stdout + result.stderr
    assert not [marker for marker in TF_LOG_MARKERS if marker in output], output[:2000]


def test_tf_logs_flag_shows_tensorflow_start_up_lines(tmp_path):
    result = subprocess.run([*tool_command("kst-analyze"), "--help", "--tf_logs"], cwd=tmp_path,
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    assert any(marker in result.stderr for marker in TF_LOG_MARKERS), result.stderr[:2000]


def test_tool_errors_are_one_line_without_traceback(tmp_path):
    result = subprocess.run([*tool_command("kst-analyze"), "--preset", str(tmp_path / "missing")],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: Preset directory")
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert list(Path(tmp_path).iterdir()) == []


def test_importing_the_package_prints_nothing(tmp_path):
    env = subprocess_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # as a user's shell has it
    code = "import keras_spiking_tf; from keras_spiking_tf.cli.startup import held_back_log; " \
           "print(len(held_back_log()) > 0)"
    quiet = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[:2000]
    assert quiet.stdout == "True\n"  # TensorFlow did print: it was held back, not lost
    shown = subprocess.run([sys.executable, "-c", "import keras_spiking_tf"], cwd=tmp_path,
                           env={**env, "KST_TF_LOGS": "1"}, capture_output=True, text=True,
                           timeout=300)
    assert any(marker in shown.stderr for marker in TF_LOG_MARKERS), shown.stderr[:2000]
