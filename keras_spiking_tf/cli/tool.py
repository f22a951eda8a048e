"""Running one of our command-line tools: common flags, errors, exit status.

Every tool runs its `main(argv)` through `run`. A mistake the library
reports as an exception of the kinds in `USER_ERRORS` (a bad flag value, a
missing file, a malformed preset, ...) is printed as one `error: ...` line
and ends the program with exit status 2; the message says what is wrong and
what to do. Anything else (a bug) keeps its traceback.
"""

import sys

from absl import app
from absl import flags

from keras_spiking_tf.edge_export import ExportError
from keras_spiking_tf.training.checkpointing import NonFiniteLossError

flags.DEFINE_bool(
    "tf_logs", False,
    "Show TensorFlow's native log lines (start-up, devices, XLA); hidden by default.",
)

HELP_FLAGS = {"--help": True, "-help": True, "-h": True, "-?": True, "--helpshort": True,
              "--helpfull": False}
USER_ERRORS = (ValueError, TypeError, OSError, ImportError, ExportError, NonFiniteLossError)
USER_ERROR_STATUS = 2


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
        try:
            return main(argv)
        except USER_ERRORS as error:
            print(f"error: {error}", file=sys.stderr)
            return USER_ERROR_STATUS

    app.run(guarded)
