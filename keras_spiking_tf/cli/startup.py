"""Keeping TensorFlow's native start-up lines off the console.

TensorFlow's C++ runtime prints lines such as "oneDNN custom operations are
on" and "Could not find cuda drivers" while it is imported, before its
logging is initialised, so `TF_CPP_MIN_LOG_LEVEL` cannot silence them (TF
2.21). Importing `keras_spiking_tf` therefore imports TensorFlow with the
process's standard error held back: the held-back text is kept
(`held_back_log()`) and replayed if the import fails, so importing the
package prints nothing. `KST_TF_LOGS=1` in the environment leaves
TensorFlow's output as it is; so does a program that imported TensorFlow
before `keras_spiking_tf` (its lines were printed already).

In our command-line tools (`kst-*`, `tools/*.py`) `TF_CPP_MIN_LOG_LEVEL` is
also set to 3 for everything TensorFlow logs later (on a machine without a
GPU, the GPU build of TensorFlow logs a `failed call to cuInit` error at its
first operation); `--tf_logs` (every tool) leaves TensorFlow's output as it
is. In other programs TensorFlow's later logging is left to the program
(`TF_CPP_MIN_LOG_LEVEL`).
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
    """Whether this process is one of our tools."""
    argv = list(sys.argv if argv is None else argv) or [""]
    program = os.path.abspath(argv[0])
    name = os.path.basename(program)
    return name in TOOL_PROGRAMS or (
        name in (*TOOL_PROGRAMS.values(), *CHECKOUT_TOOLS)
        and os.path.basename(os.path.dirname(program)) == "tools"
    )


_HELD_BACK = []


def held_back_log():
    """What TensorFlow printed while `keras_spiking_tf` imported it (held
    back from the console)."""
    return "".join(_HELD_BACK)


def showing_tensorflow_logs(argv=None):
    """Whether TensorFlow's start-up lines are to be shown: `KST_TF_LOGS=1`,
    or `--tf_logs` in one of our tools."""
    if os.environ.get("KST_TF_LOGS", "").lower() in ("1", "true", "yes"):
        return True
    argv = list(sys.argv if argv is None else argv) or [""]
    return any(
        arg == SHOW_FLAG or arg.startswith(SHOW_FLAG + "=") and arg.split("=", 1)[1].lower()
        in ("1", "true", "yes")
        for arg in argv[1:]
    )


@contextlib.contextmanager
def quiet_tensorflow_start():
    """Runs the block (the import of TensorFlow) with standard error held
    back, unless TensorFlow's lines are to be shown or TensorFlow is
    imported already; the held-back text is shown if the block raises."""
    if "tensorflow" in sys.modules or showing_tensorflow_logs():
        yield
        return
    if running_a_tool():
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
            held.seek(0)
            _HELD_BACK.append(held.read().decode(errors="replace"))


class NativeOutputDiverted:
    """While a tool runs (below `--verbose 2`), what native libraries write
    to the process's standard error (TensorFlow's C++ runtime, LiteRT and
    XNNPACK's "INFO: Created TensorFlow Lite XNNPACK delegate", also from
    child processes) goes into a temporary file instead of the console;
    Python's own `sys.stderr` (our messages, warnings, log handlers that
    write to it) keeps writing to the console. `text()` returns what was
    diverted (for the failure log); `restore()` undoes it.

    Nothing is diverted when standard error is not the process's own
    (e.g. captured by a test).
    """

    def __init__(self):
        self.active = False
        try:
            if sys.stderr is not sys.__stderr__ or sys.stderr.fileno() != 2:
                return
        except (AttributeError, OSError, ValueError):
            return
        sys.stderr.flush()
        self._old = sys.stderr
        self._console = os.fdopen(os.dup(2), "w", buffering=1, encoding=self._old.encoding,
                                  errors="backslashreplace")
        self._diverted = tempfile.TemporaryFile()
        os.dup2(self._diverted.fileno(), 2)
        sys.stderr = self._console
        self._retarget(self._old, self._console)
        self.active = True

    @staticmethod
    def _retarget(old, new):
        import logging

        loggers = [logging.getLogger(), *(logging.getLogger(name)
                                          for name in list(logging.root.manager.loggerDict))]
        handlers = [handler for logger in loggers for handler in getattr(logger, "handlers", [])]
        handlers += [getattr(handler, "python_handler", None) for handler in handlers]
        for handler in handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)

    def text(self):
        if not self.active:
            return ""
        self._diverted.flush()
        self._diverted.seek(0)
        return self._diverted.read().decode(errors="replace")

    def restore(self):
        if not self.active:
            return
        self._console.flush()
        os.dup2(self._console.fileno(), 2)
        self._retarget(self._console, self._old)
        sys.stderr = self._old
        self._console.close()
        self._diverted.close()
        self.active = False
