"""Importing an optional dependency, with the install command when it is missing.

The packages a feature needs beyond the core dependencies belong to one of
the package's extras (`[project.optional-dependencies]` in pyproject.toml).
Every import of one of them in the package goes through `require`, which
returns the module or raises an `ImportError` naming the package and the
exact `pip install` command:

    kst-export --format onnx needs the optional package 'onnx':
    pip install "keras-spiking-tf[export]"

(one line; the tools print it as one `error:` line, exit status 2).

`OPTIONAL_MODULES` is the one table of them: top-level module name ->
(pip package, extra). `tests/test_optional_dependencies.py` checks it
against pyproject.toml and checks that no module of the package imports an
optional module any other way.
"""

import importlib

DISTRIBUTION = "keras-spiking-tf"

# top-level module -> (pip package, extra of pyproject.toml that installs it)
OPTIONAL_MODULES = {
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "tf2onnx": ("tf2onnx", "export"),
    "ai_edge_litert": ("ai-edge-litert", "export"),
    "tflite_micro": ("tflite-micro", "micro"),
    "jax": ("jax", "backends"),
    "torch": ("torch", "backends"),
    "tonic": ("tonic", "events"),
}


def install_command(extra):
    """The pip command that installs `extra`, e.g.
    `pip install "keras-spiking-tf[export]"`."""
    return f'pip install "{DISTRIBUTION}[{extra}]"'


def require(module_name, purpose):
    """Imports and returns `module_name` (e.g. `"onnx"`,
    `"ai_edge_litert.interpreter"`), an optional dependency.

    Args:
        module_name: the module to import; its top-level package must be in
            `OPTIONAL_MODULES`.
        purpose: what needs it, as the start of a sentence, e.g.
            `"export(format='onnx')"` or `"kst-export --format onnx"`.

    Raises:
        ImportError: the module cannot be imported; the message names the
            pip package and the command installing the extra that has it.
        ValueError: `module_name` is not an optional dependency (a bug).
    """
    top = module_name.split(".")[0]
    if top not in OPTIONAL_MODULES:
        raise ValueError(
            f"require(module_name={module_name!r}): {top!r} is not an optional "
            f"dependency; the optional ones are {sorted(OPTIONAL_MODULES)}."
        )
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        # The package that is missing may be another optional one that this
        # one imports (tf2onnx imports onnx): name that one.
        missing = (error.name or "").split(".")[0]
        package, extra = OPTIONAL_MODULES.get(missing, OPTIONAL_MODULES[top])
        raise ImportError(
            f"{purpose} needs the optional package '{package}': {install_command(extra)} "
            f"(import {module_name} failed: {error})",
            name=module_name,
        ) from error
