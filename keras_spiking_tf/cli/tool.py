"""Running one of our command-line tools: common flags, errors, exit status.

Every tool runs its `main(argv)` through `run`, and every exception ends
as one `error: ...` line:

- a usage error (an exception of the kinds in `USER_ERRORS`: a bad flag
  value, a missing file, a malformed preset, ...) prints the library's
  message, which says what is wrong and what to do, and exits with status 2;
- running out of memory anywhere (TensorFlow's `ResourceExhaustedError`,
  `MemoryError`, ONNX Runtime's or LiteRT's failed allocations, also when
  wrapped in another error) prints `error: out of memory ...` naming the
  tool's flags that lower memory (`MEMORY_FLAGS`, the one table of them)
  and exits with status 1;
- any other failure (a bug, a broken installation) prints the exception in
  one line and exits with status 1.

For failures the traceback goes into a log file that the line names
(`keras-spiking-tf-logs/` in the system's temporary directory), and with
`--verbose 2` also onto the console. `--verbose` (0 quiet, 1 the default,
2 everything) also decides whether the libraries' own INFO lines (absl,
TensorFlow, TensorFlow Datasets, SavedModel) and what native libraries
print (LiteRT's "Created TensorFlow Lite XNNPACK delegate", TensorFlow's
C++ runtime) are shown: only at 2; below, the native output goes into the
failure's log file (`startup.NativeOutputDiverted`).
"""

import datetime
import logging
import os
import sys
import tempfile
import traceback

from absl import app
from absl import flags

from keras_spiking_tf.cli.startup import NativeOutputDiverted
from keras_spiking_tf.edge_export import ExportError
from keras_spiking_tf.training.checkpointing import NonFiniteLossError

flags.DEFINE_bool(
    "tf_logs", False,
    "Show TensorFlow's native log lines (start-up, devices, XLA); hidden by default.",
)
flags.DEFINE_integer(
    "verbose", 1,
    "0: quiet; 1: progress (the default); 2: also the libraries' INFO lines and, for a "
    "failure, its traceback on the console.",
    lower_bound=0, upper_bound=2,
)

HELP_FLAGS = {"--help": True, "-help": True, "-h": True, "-?": True, "--helpshort": True,
              "--helpfull": False}
USER_ERRORS = (ValueError, TypeError, OSError, ImportError, ExportError, NonFiniteLossError)
USER_ERROR_STATUS = 2
FAILURE_STATUS = 1
OUT_OF_MEMORY_STATUS = FAILURE_STATUS
INTERRUPTED_STATUS = 130
LOG_DIRECTORY = os.path.join(tempfile.gettempdir(), "keras-spiking-tf-logs")

# The flags that lower each tool's memory, by program (`startup.TOOL_PROGRAMS`).
MEMORY_FLAGS = {
    "kst-export": ("batch_size", "num_verification_images", "num_calibration_images"),
    "kst-train": ("batch_size",),
    "kst-predict": ("batch_size",),
    "kst-analyze": ("num_images",),
    "kst-convert-sdt": (),
}
# What the runtimes' failed allocations say (ONNX Runtime's arena: "Failed to
# allocate memory for requested buffer of size ..."; TensorFlow: "OOM when
# allocating tensor ..."; C++'s std::bad_alloc, which pybind11-wrapped
# runtimes such as LiteRT raise as MemoryError).
OUT_OF_MEMORY_MESSAGES = (
    "failed to allocate memory",
    "oom when allocating",
    "std::bad_alloc",
    "out of memory",
)
MAX_MESSAGE_CHARS = 300


def out_of_memory_error(error):
    """The exception in `error`'s chain (itself, then its causes and
    contexts) that reports running out of memory, or `None`: the innermost
    one, since a wrapper (an `ExportError` of the exporter) repeats its
    message."""
    tensorflow = sys.modules.get("tensorflow")
    tf_errors = getattr(tensorflow, "errors", None)
    found, seen = None, set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error).lower()
        if (
            isinstance(error, MemoryError)
            or (tf_errors is not None and isinstance(error, tf_errors.ResourceExhaustedError))
            or any(message in text for message in OUT_OF_MEMORY_MESSAGES)
        ):
            found = error
        error = error.__cause__ or error.__context__
    return found


def tool_name(main):
    """The `kst-*` name of the tool whose `main` this is (also when run as
    `tools/export.py` or `python -m keras_spiking_tf.cli.export`)."""
    from keras_spiking_tf.cli.startup import TOOL_PROGRAMS

    module = sys.modules.get(main.__module__)
    filename = os.path.basename(getattr(module, "__file__", "") or "")
    for name, program in TOOL_PROGRAMS.items():
        if program == filename:
            return name
    return os.path.basename(sys.argv[0]) or "this tool"


def _memory_detail(text):
    """The part of an error message that says what failed to allocate: its
    first line that names an allocation failure (from that phrase on, if
    long), else its first line; at most `MAX_MESSAGE_CHARS`."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = lines[0] if lines else ""
    for line in lines:
        start = min(
            (line.lower().find(m) for m in OUT_OF_MEMORY_MESSAGES if m in line.lower()),
            default=-1,
        )
        if start >= 0:
            detail = line if len(line) <= MAX_MESSAGE_CHARS else line[start:]
            break
    if len(detail) > MAX_MESSAGE_CHARS:
        detail = detail[: MAX_MESSAGE_CHARS - 3] + "..."
    return detail


def out_of_memory_message(error, tool, flag_values=None):
    """One line: what ran out of memory and which of `tool`'s flags lower
    memory, with their current values (`flag_values`: name -> value;
    default absl's parsed flags)."""
    memory_flags = MEMORY_FLAGS.get(tool, ())
    if flag_values is None:
        flag_values = {name: getattr(flags.FLAGS, name) for name in memory_flags}
    detail = _memory_detail(str(error)) or "no message"
    names = [
        f"--{name} (now {'its default' if flag_values[name] is None else flag_values[name]})"
        for name in memory_flags
    ]
    if tool not in MEMORY_FLAGS:  # tests/test_tool_errors.py: every kst-* tool is listed
        advice = "Free memory or use a larger machine."
    elif not names:
        advice = f"{tool} has no flag that lowers its memory; free memory or use a larger machine."
    elif len(names) == 1:
        advice = f"Lower {names[0]}."
    else:
        advice = f"Lower {', '.join(names[:-1])} or {names[-1]}."
    return f"out of memory in {tool} ({type(error).__name__}: {detail}). {advice}"


def run(main):
    """Parses the flags and runs `main(argv)`; returns only on success.

    `--help` lists the flags of `main`'s module and this one's, whichever
    program file (`kst-train`, `tools/train.py`) started the process, and
    exits with status 0.
    """
    program = sys.argv[0]
    sys.modules["__main__"].__doc__ = sys.modules[main.__module__].__doc__  # --help's text
    for module in (main.__module__, __name__):
        for flag in flags.FLAGS.get_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(program, flag)
    for argument in sys.argv[1:]:
        if argument in HELP_FLAGS:  # absl's own help ends with exit status 1
            app.usage(shorthelp=HELP_FLAGS[argument], writeto_stdout=True, exitcode=0)

    def guarded(argv):
        quiet_library_logs(flags.FLAGS.verbose)
        native = None
        if flags.FLAGS.verbose < 2 and not flags.FLAGS.tf_logs:
            native = NativeOutputDiverted()
        try:
            return main(argv)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return INTERRUPTED_STATUS
        except Exception as error:
            memory_error = out_of_memory_error(error)
            if memory_error is None and isinstance(error, USER_ERRORS):
                print(f"error: {error}", file=sys.stderr)
                return USER_ERROR_STATUS
            if memory_error is not None:
                message = out_of_memory_message(memory_error, tool_name(main))
            else:
                message = f"{type(error).__name__}: {_first_line(error)}"
            log = write_traceback(tool_name(main), error, native.text() if native else "")
            if flags.FLAGS.verbose >= 2:
                traceback.print_exception(error, file=sys.stderr)
            print(f"error: {message} (traceback in {log})", file=sys.stderr)
            return FAILURE_STATUS
        finally:
            if native is not None:
                native.restore()

    app.run(guarded, flags_parser=_parse_flags)


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else "no message"
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def write_traceback(tool, error, native_output=""):
    """Writes `error`'s traceback, with the command line and what native
    libraries printed (`native_output`), into a new log file under
    `LOG_DIRECTORY`; returns its path."""
    os.makedirs(LOG_DIRECTORY, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(LOG_DIRECTORY, f"{tool}-{stamp}-{os.getpid()}.log")
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"command: {' '.join(sys.argv)}\n\n")
        file.write("".join(traceback.format_exception(error)))
        if native_output:
            file.write("\nwhat native libraries printed (hidden below --verbose 2):\n")
            file.write(native_output)
    return path


def quiet_library_logs(verbose):
    """Below `--verbose 2`, the libraries' INFO lines (absl's, TensorFlow's
    Python logger, TensorFlow Datasets, SavedModel) stay off the console;
    their warnings and errors still show."""
    from absl import logging as absl_logging

    level = logging.INFO if verbose >= 2 else logging.WARNING
    absl_logging.set_verbosity(absl_logging.INFO if verbose >= 2 else absl_logging.WARNING)
    for name in ("tensorflow", "tensorflow_datasets", "absl"):
        logging.getLogger(name).setLevel(level)


def _parse_flags(argv):
    """absl's flag parsing, with a bad flag value (e.g. `--batch_size 0`) a
    usage error like any other: one `error:` line, exit status 2 (absl's own
    parser ends with status 1, the status of failures such as running out
    of memory)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error} (see --help)", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)
