"""Keeping TensorFlow's native start-up lines off the console of our tools.

TensorFlow's C++ runtime prints lines such as "oneDNN custom operations are
on" and "Could not find cuda drivers" while it is imported, before its
logging is initialised, so `TF_CPP_MIN_LOG_LEVEL` cannot silence them (TF
2.21). In our command-line tools (`kst-*`, `tools/*.py`) the import is
therefore run with the process's standard error redirected into a buffer,
which is replayed if the import fails, and `TF_CPP_MIN_LOG_LEVEL` is set to
3 for everything TensorFlow logs later (on a machine without a GPU, the GPU
build of TensorFlow logs a `failed call to cuInit` error at its first
operation). `--tf_logs` (every tool) leaves TensorFlow's output as it is.

In any other program that imports `keras_spiking_tf` nothing is changed.
"""

import contextlib
import os
import sys
import tempfile

TOOL_PROGRAMS = {
    "kst-train": "train.py",
    "kst-predict": "predict.py",
    "kst-export": "export.py",
    "kst-analyze": "analyze.py",
    "kst-convert-sdt": "convert_sdt_checkpoint.py",
}
CHECKOUT_TOOLS = ("make_example_folder.py",)  # tools/ programs without a kst- name
SHOW_FLAG = "--tf_logs"


def running_a_tool(argv=None):
    """Whether this process is one of our tools (and `--tf_logs` is off)."""
    argv = list(sys.argv if argv is None else argv) or [""]
    program = os.path.abspath(argv[0])
    name = os.path.basename(program)
    is_tool = name in TOOL_PROGRAMS or (
        name in (*TOOL_PROGRAMS.values(), *CHECKOUT_TOOLS)
        and os.path.basename(os.path.dirname(program)) == "tools"
    )
    shows_logs = any(
        arg == SHOW_FLAG or arg.startswith(SHOW_FLAG + "=") and arg.split("=", 1)[1].lower()
        in ("1", "true", "yes")
        for arg in argv[1:]
    )
    return is_tool and not shows_logs


@contextlib.contextmanager
def quiet_tensorflow_start_for_tools():
    """Runs the block (the import of TensorFlow) with standard error held
    back, in our tools only; the held-back text is shown if the block
    raises."""
    if not running_a_tool():
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
