"""Errors in the command-line tools (`keras_spiking_tf/cli/tool.py`): out of
memory is one `error:` line naming the flags that lower memory, exit status
1; any other failure one line naming the exception, exit status 1, its
traceback in a log file the line names; usage errors exit status 2.

The out-of-memory errors are injected: a function inside the tool is
replaced (in the tool's own process) by one raising what the runtime raises
when an allocation fails.
"""

import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import keras_spiking_tf
from conftest import subprocess_env
from keras_spiking_tf.cli import tool
from keras_spiking_tf.cli.startup import TOOL_PROGRAMS
from keras_spiking_tf.edge_export import ExportError

CLI = Path(keras_spiking_tf.__file__).resolve().parent / "cli"
TF_OOM = "OOM when allocating tensor with shape[512,4,224,224,64] and type float on /job:localhost"
ORT_OOM = (
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running "
    "Conv node. Name:'conv' Status Message: /onnxruntime_src/onnxruntime/core/framework/"
    "bfc_arena.cc:359 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, "
    "onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Failed to allocate memory "
    "for requested buffer of size 6576668672"
)


def _tf_oom():
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(None, None, TF_OOM + "\n\t [[{{node conv}}]]")


def _ort_oom():
    onnxruntime = pytest.importorskip("onnxruntime")
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    assert onnxruntime
    return RuntimeException(ORT_OOM)


def _wrapped(error):
    """`error` as the exporter's verification reports it: inside an ExportError."""
    try:
        try:
            raise error
        except Exception as inner:
            raise ExportError(f"The exported onnx model failed to run in its runtime: {inner}") from inner
    except ExportError as outer:
        return outer


# --- recognising an out-of-memory error -------------------------------------------


@pytest.mark.parametrize("make", [
    _tf_oom, _ort_oom, MemoryError,
    lambda: MemoryError("std::bad_alloc"),
    lambda: _wrapped(_tf_oom()), lambda: _wrapped(_ort_oom()), lambda: _wrapped(MemoryError()),
])
def test_out_of_memory_errors_are_recognised(make):
    error = make()
    found = tool.out_of_memory_error(error)
    assert found is not None
    # The error found is the one that says so, not its wrapper.
    assert not isinstance(found, ExportError)


@pytest.mark.parametrize("error", [
    ValueError("batch_size must be an integer >= 1"),
    RuntimeError("Failed to allocate tensors"),  # LiteRT: a bad model, not memory
    ExportError("The converted LiteRT model does not run"),
    FileNotFoundError("No exported model at 'x.tflite'."),
])
def test_other_errors_are_not_out_of_memory(error):
    assert tool.out_of_memory_error(error) is None


def test_every_tool_registers_memory_flags_it_defines():
    assert set(tool.MEMORY_FLAGS) == set(TOOL_PROGRAMS)
    for name, program in TOOL_PROGRAMS.items():
        source = (CLI / program).read_text()
        defined = set(re.findall(r'DEFINE_\w+\(\s*"(\w+)"', source))
        for flag in tool.MEMORY_FLAGS[name]:
            assert flag in defined, f"{name}: --{flag} is not a flag of {program}"
    assert tool.MEMORY_FLAGS["kst-export"][0] == "batch_size"
    assert tool.MEMORY_FLAGS["kst-train"] == ("batch_size",)
    assert tool.MEMORY_FLAGS["kst-analyze"] == ("num_images",)


def test_the_message_is_one_line_naming_the_flags_and_their_values():
    message = tool.out_of_memory_message(
        _tf_oom(), "kst-export",
        {"batch_size": 5, "num_verification_images": None, "num_calibration_images": 512},
    )
    assert message == (
        "out of memory in kst-export (ResourceExhaustedError: " + TF_OOM + "). Lower "
        "--batch_size (now 5), --num_verification_images (now its default) or "
        "--num_calibration_images (now 512)."
    )
    ort = tool.out_of_memory_message(_ort_oom(), "kst-analyze", {"num_images": 32})
    assert "\n" not in ort and ort.endswith("Lower --num_images (now 32).")
    # A long runtime message is cut to the part that says what failed.
    assert "(RuntimeException: Failed to allocate memory for requested buffer of size 6576668672)" in ort
    assert tool.out_of_memory_message(MemoryError(), "kst-convert-sdt", {}).endswith(
        "kst-convert-sdt has no flag that lowers its memory; free memory or use a larger machine."
    )


def _main_raising(error):
    def main(argv):
        raise error
    return main


@pytest.mark.parametrize("error,status", [
    (_wrapped(MemoryError("Unable to allocate 6.1 GiB for an array")), 1),
    (ValueError("--batch_size must be >= 1"), 2),
])
def test_exit_status_is_1_for_out_of_memory_and_2_for_usage_errors(monkeypatch, capsys, error,
                                                                    status):
    monkeypatch.setattr(sys, "argv", ["kst-dummy"])
    monkeypatch.setattr(sys.modules["__main__"], "__doc__", None, raising=False)
    with pytest.raises(SystemExit) as exited:
        tool.run(_main_raising(error))
    assert exited.value.code == status
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    if status == 1:
        assert lines[0].startswith("error: out of memory in kst-dummy (MemoryError: Unable to allocate")


@pytest.mark.parametrize("verbose", [1, 2])
def test_a_failure_is_one_line_with_its_traceback_in_a_log(monkeypatch, capsys, tmp_path, verbose):
    monkeypatch.setattr(tool, "LOG_DIRECTORY", str(tmp_path / "logs"))
    monkeypatch.setattr(sys, "argv", ["kst-dummy", f"--verbose={verbose}"])
    monkeypatch.setattr(sys.modules["__main__"], "__doc__", None, raising=False)

    def main(argv):
        {}["a missing key"]  # a bug

    with pytest.raises(SystemExit) as exited:
        tool.run(main)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: KeyError: 'a missing key' (traceback in ")
    (log,) = (tmp_path / "logs").iterdir()
    assert errors[0].endswith(f"(traceback in {log})")
    text = log.read_text()
    assert text.startswith(f"command: kst-dummy --verbose={verbose}")
    assert "Traceback (most recent call last)" in text and '{}["a missing key"]' in text
    # The traceback reaches the console only with --verbose 2.
    assert ("Traceback (most recent call last)" in err) == (verbose == 2)


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["kst-dummy"])
    monkeypatch.setattr(sys.modules["__main__"], "__doc__", None, raising=False)
    with pytest.raises(SystemExit) as exited:
        tool.run(_main_raising(KeyboardInterrupt()))
    assert exited.value.code == 130 and capsys.readouterr().err == "error: interrupted\n"


# --- the tools themselves, out of memory inside them ---------------------------------

# In the tool's own process: `patch` replaces a function inside the tool by
# one raising an out-of-memory error, then the tool runs with `argv`.
_RUN = """
import sys
sys.argv = {argv!r}
{patch}
from keras_spiking_tf.cli.{program} import main
main()
"""
_TF_OOM_IN = """
import tensorflow as tf
import {module} as target
def fail(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(None, None, {message!r})
target.{attribute} = fail
"""
_ORT_OOM_IN_ONNX_RUNNER = f"""
from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException
import keras_spiking_tf.edge_export.onnx as target
def fail(self, images):
    raise RuntimeException({ORT_OOM!r})
target.Runner.__call__ = fail
"""


def _tf_oom_in(module, attribute):
    return _TF_OOM_IN.format(module=module, attribute=attribute,
                             message=TF_OOM + "\n\t [[{{node conv}}]]")


def _run_tool(tmp_path, name, argv, patch):
    script = _RUN.format(argv=[name, *argv], patch=patch, program=TOOL_PROGRAMS[name][:-3])
    return subprocess.run([sys.executable, "-c", script], env=subprocess_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


def _assert_one_memory_error(result, tool_name, *expected):
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]  # it is in the log file
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(f"error: out of memory in {tool_name} ("), errors[0]
    for text in expected:
        assert text in errors[0], (text, errors[0])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on TF")
@pytest.mark.parametrize("where", ["keras", "onnxruntime"])
def test_export_tool_out_of_memory_in_verification(tmp_path, where):
    """TensorFlow runs out of memory in the Keras half of verification, or ONNX
    Runtime in the exported file's half (where the exporter wraps it in an
    ExportError): one line naming --batch_size with its value, exit 1,
    nothing written."""
    pytest.importorskip("onnxruntime")
    output = tmp_path / "out" / "digits.onnx"
    argv = ["--preset", "st_2_64_digits", "--format", "onnx", "--batch_size", "3",
            "--num_verification_images", "8", "--output", str(output)]
    if where == "keras":
        patch = _tf_oom_in("keras_spiking_tf.edge_export.verification", "_keras_outputs")
        detail = "(ResourceExhaustedError: OOM when allocating tensor with shape[512,4,224,224,64]"
    else:
        patch = _ORT_OOM_IN_ONNX_RUNNER
        detail = "(RuntimeException: Failed to allocate memory for requested buffer of size"
    result = _run_tool(tmp_path, "kst-export", argv, patch)
    _assert_one_memory_error(
        result, "kst-export", detail, "Lower --batch_size (now 3), "
        "--num_verification_images (now 8) or --num_calibration_images (now 512).",
    )
    assert list(output.parent.iterdir()) == []  # the staging file is gone


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the tools run on TF")
@pytest.mark.parametrize("name,argv,target,advice", [
    ("kst-analyze", ["--preset", "st_2_64_digits", "--dataset", "random", "--num_images", "2"],
     ("keras_spiking_tf.cli.analyze", "firing_rates"), "Lower --num_images (now 2)."),
    ("kst-train", ["--batch_size", "7"], ("keras_spiking_tf.cli.train", "run_training"),
     "Lower --batch_size (now 7)."),
])
def test_analyze_and_train_tools_name_their_memory_flag(tmp_path, name, argv, target, advice):
    result = _run_tool(tmp_path, name, [*argv, "--output_dir", str(tmp_path / "out")],
                       _tf_oom_in(*target))
    _assert_one_memory_error(result, name, "OOM when allocating tensor", advice)


def test_a_bad_flag_value_is_a_usage_error_with_status_2(tmp_path):
    """absl's parser would end with status 1, the status of running out of
    memory; a bad flag value is a usage error like any other."""
    from conftest import tool_command

    result = subprocess.run([*tool_command("kst-export"), "--batch_size", "0",
                             "--output", str(tmp_path / "m.onnx")],
                            env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "error: flag --batch_size=0: 0 is not a positive integer (see --help)"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on TF")
def test_library_info_lines_only_with_verbose_2(tmp_path):
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
    from C++ when the exported file is verified; absl and TensorFlow log INFO
    lines from Python. Only `--verbose 2` shows them."""
    from conftest import tool_command

    outputs = {}
    for verbose in (1, 2):
        result = subprocess.run(
            [*tool_command("kst-export"), "--preset", "st_2_64_digits", "--format", "litert",
             "--num_verification_images", "4", "--verbose", str(verbose),
             "--output", str(tmp_path / f"v{verbose}" / "digits.tflite")],
            env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[verbose] = result.stdout + result.stderr
    info = re.compile(r"^(INFO|I\d{4})", re.M)
    assert not info.search(outputs[1]), outputs[1][-3000:]
    assert "top-1 agreement" in outputs[1]  # the tool's own report still shows
    assert "Created TensorFlow Lite XNNPACK delegate" in outputs[2]
