"""Optional dependencies (`keras_spiking_tf/optional_dependencies.py`): every
feature that needs a package of an extra says which package and the exact
pip command when it is missing, and no module imports one any other way.

A missing package is simulated with `sys.modules[name] = None`, which makes
`import name` raise ImportError without uninstalling anything.
"""

import ast
import re
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_spiking_tf
from keras_spiking_tf import optional_dependencies
from keras_spiking_tf.optional_dependencies import OPTIONAL_MODULES
from keras_spiking_tf.optional_dependencies import require

PACKAGE = Path(keras_spiking_tf.__file__).resolve().parent
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# Import names of the core dependencies (pyproject's `dependencies`), and of
# what they install in turn that the package imports (numpy with
# tensorflow, scipy with scikit-learn, google.protobuf with tensorflow).
CORE_MODULES = {
    "keras", "keras_hub", "tensorflow", "tensorflow_datasets", "importlib_resources",
    "absl", "sklearn", "h5py", "huggingface_hub", "matplotlib", "tensorboard",
    "numpy", "scipy", "google",
}
# Direct imports of optional modules that are not `require` calls, each with
# its reason. Entries marked "to convert" are in files outside this change;
# once converted, the entry must go (the test fails on stale entries).
DIRECT_IMPORTS = {
    ("layers/lif_cell.py", "jax"): "runs only under KERAS_BACKEND=jax, which has imported jax",
    ("training/precision.py", "jax"): "runs only under KERAS_BACKEND=jax",
    ("edge_export/exporter.py", "jax"): "runs only under KERAS_BACKEND=jax",
    ("training/precision.py", "torch"): "runs only under KERAS_BACKEND=torch",
}


def _imports(path):
    """`(top-level module, line)` of every absolute import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def _requirement_name(requirement):
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_the_table_matches_pyproject_extras():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for module, (package, extra) in OPTIONAL_MODULES.items():
        assert extra in extras, f"{module}: extra {extra!r} is not in pyproject.toml"
        names = {_requirement_name(r) for r in extras[extra]}
        assert package.lower() in names, f"{module}: {package!r} is not in extra {extra!r}"
    listed = {(package.lower(), extra) for package, extra in OPTIONAL_MODULES.values()}
    for extra in ("export", "backends", "events", "micro"):
        for requirement in extras[extra]:
            assert (_requirement_name(requirement), extra) in listed, (
                f"pyproject's [{extra}] has {requirement!r}, which OPTIONAL_MODULES lacks"
            )


def test_every_optional_import_goes_through_require():
    """A module of the package that imports a package neither core nor in
    OPTIONAL_MODULES fails here (add it to one of them), and so does an
    optional module imported directly instead of through `require`."""
    stdlib = set(sys.stdlib_module_names)
    unknown, direct, used_exemptions = [], [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "optional_dependencies.py":
            continue
        for module, line in _imports(path):
            if module in stdlib or module == "keras_spiking_tf" or module in CORE_MODULES:
                continue
            if module not in OPTIONAL_MODULES:
                unknown.append(f"{relative}:{line} imports {module}")
            elif (relative, module) in DIRECT_IMPORTS:
                used_exemptions.add((relative, module))
            else:
                direct.append(f"{relative}:{line} imports {module} (use require())")
    assert not unknown, f"imports of packages that are neither core nor optional: {unknown}"
    assert not direct, direct
    assert used_exemptions == set(DIRECT_IMPORTS), (
        f"stale DIRECT_IMPORTS entries: {set(DIRECT_IMPORTS) - used_exemptions}"
    )


def test_require_returns_the_module_and_refuses_unknown_names():
    onnx = pytest.importorskip("onnx")
    assert require("onnx", "test") is onnx
    assert require("onnx.helper", "test") is sys.modules["onnx.helper"]
    with pytest.raises(ValueError, match=r"require\(module_name='numpy'\).*optional ones"):
        require("numpy", "test")
    assert optional_dependencies.install_command("export") == 'pip install "keras-spiking-tf[export]"'


def _hide(monkeypatch, module):
    """Makes `import module` (and its submodules) raise ImportError."""
    for name in [n for n in sys.modules if n == module or n.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)


def _tiny_classifier():
    inputs = keras.Input((4, 4, 1), name="images")
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def _export(format, suffix):
    def call(tmp_path):
        from keras_spiking_tf.edge_export import export

        export(_tiny_classifier(), tmp_path / f"m{suffix}", format=format,
               verification_images=np.zeros((2, 4, 4, 1), "float32"))
    return call


def _load(suffix):
    def call(tmp_path):
        from keras_spiking_tf.edge_export import load_exported

        path = tmp_path / f"input{suffix}"
        path.write_bytes(b"not read: the runtime is missing")
        load_exported(path)
    return call


def _step_runner(suffix):
    def call(tmp_path):
        from keras_spiking_tf.edge_export import load_step_model

        path = tmp_path / f"input_step{suffix}"
        path.write_bytes(b"not read: the runtime is missing")
        load_step_model(path)
    return call


def _micro_step_runner(tmp_path):
    from keras_spiking_tf.edge_export.streaming import StepRunner

    path = tmp_path / "input_step.tflite"
    path.write_bytes(b"not read: the runtime is missing")
    StepRunner(path, format="litert_micro")


def _event_data(tmp_path):
    from keras_spiking_tf.training.datasets import load_dataset

    load_dataset("dvs_gesture", data_dir=str(tmp_path), time_steps=4)


def _sdt_checkpoint(tmp_path):
    from keras_spiking_tf.conversion import load_sdt_state_dict

    path = tmp_path / "input.pth"
    path.write_bytes(b"not read: PyTorch is missing")
    load_sdt_state_dict(path)


def _litert_profile(tmp_path):
    from keras_spiking_tf.edge_export.profile import litert_delegation

    path = tmp_path / "input.tflite"
    path.write_bytes(b"not read: the runtime is missing")
    litert_delegation(path)


def _require(module):
    def call(tmp_path):
        require(module, "This feature")
    return call


# Per optional module: public entry points that need it. Every module of
# OPTIONAL_MODULES needs at least one (test below).
ENTRY_POINTS = {
    "onnx": [_export("onnx", ".onnx")],
    "tf2onnx": [_export("onnx", ".onnx")],
    "onnxruntime": [_export("onnx", ".onnx"), _load(".onnx"), _step_runner(".onnx")],
    "ai_edge_litert": [_export("litert", ".tflite"), _load(".tflite"), _step_runner(".tflite"),
                       _litert_profile],
    "tonic": [_event_data],
    "tflite_micro": [_export("litert_micro", ".tflite"), _micro_step_runner],
    # Imported by Keras itself under their backends (DIRECT_IMPORTS); the
    # entry point is require.
    "jax": [_require("jax")],
    "torch": [_require("torch"), _sdt_checkpoint],
}
NEEDS_TENSORFLOW = {"onnx", "tf2onnx", "onnxruntime", "ai_edge_litert", "tflite_micro"}


def test_every_optional_module_has_an_entry_point_test():
    assert set(ENTRY_POINTS) == set(OPTIONAL_MODULES)


@pytest.mark.parametrize(
    "module,index",
    [(module, i) for module, calls in ENTRY_POINTS.items() for i in range(len(calls))],
)
def test_a_missing_optional_package_names_the_pip_command(monkeypatch, tmp_path, module, index):
    if module in NEEDS_TENSORFLOW and keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on TensorFlow")
    package, extra = OPTIONAL_MODULES[module]
    _hide(monkeypatch, module)
    with pytest.raises(ImportError) as error:
        ENTRY_POINTS[module][index](tmp_path)
    message = str(error.value)
    assert f"needs the optional package '{package}': " in message, message
    assert f'pip install "keras-spiking-tf[{extra}]"' in message, message
    assert "\n" not in message
    # Refused before anything was written (the load tests wrote their input).
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("input")] == []


def test_the_export_tool_prints_the_install_command_as_one_error_line(tmp_path):
    """kst-export without the export extra (onnx hidden in the tool's process)."""
    import subprocess

    from conftest import subprocess_env

    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on TensorFlow")
    script = (
        "import sys; sys.modules['onnx'] = None; "
        "sys.argv = ['kst-export', '--preset', 'st_2_64_digits', '--format', 'onnx', "
        f"'--output', {str(tmp_path / 'm.onnx')!r}]; "
        "from keras_spiking_tf.cli.export import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", script], env=subprocess_env(),
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith("error: export(format='onnx') needs the optional package 'onnx': "
                               'pip install "keras-spiking-tf[export]"')
    assert list(tmp_path.iterdir()) == []
