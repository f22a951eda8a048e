"""One process at a time in a run directory.

A training run writes into its directory for hours (checkpoints, logs,
presets); two processes writing the same files would ruin both runs. While a
process trains, it holds an exclusive lock on `<run directory>/.kst-run.lock`
(an operating-system file lock, `fcntl.flock`), and the file records who
holds it: process id, host and start time. A second process is refused with
an error that names the running one, before it writes anything.

The operating system releases the lock when its process ends, however it
ends, so a run killed by a crash, a kill or a power cut never blocks the
next one: the next process takes the lock over and says whose it was. A run
that ends normally removes the file.

Example:

```python
with RunDirectoryLock("runs/my-run"):
    ...                          # train, checkpoint, write logs
```
"""

import datetime
import json
import os
import socket
import sys

LOCK_FILE = ".kst-run.lock"


class RunDirectoryLockedError(FileExistsError):
    """Another live process holds the run directory."""


def _describe(holder):
    if not holder:
        return "another process (it is starting up)"
    return (f"process {holder.get('pid')} on host {holder.get('host')!r} (started "
            f"{holder.get('started')}, command {holder.get('command')!r})")


def _read(path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.loads(file.read() or "null")
    except (OSError, ValueError):
        return None


def lock_holder(directory):
    """The record of the live process that holds `directory`'s lock, or
    `None` when no live process holds it (nothing is written)."""
    import fcntl

    path = os.path.join(directory, LOCK_FILE)
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read(path) or {}
    finally:
        os.close(descriptor)  # also releases the probe's shared lock
    return None


def locked_error(directory, holder):
    """The `RunDirectoryLockedError` for `directory` held by `holder`."""
    return RunDirectoryLockedError(
        f"'{directory}' is in use by {_describe(holder)}: one process at a time trains into "
        "a run directory. Wait for it to finish (or stop it), or choose another --output_dir."
    )


class RunDirectoryLock:
    """An exclusive lock on a run directory, held while the block runs.

    Args:
        directory: the run directory (it must exist).
        announce: called with a one-line notice when a lock left by a
            process that has ended is taken over (`None`: silent).

    Raises:
        RunDirectoryLockedError: a live process holds the directory.
    """

    def __init__(self, directory, announce=print):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, LOCK_FILE)
        self.announce = announce
        self._descriptor = None

    def __enter__(self):
        import fcntl

        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise locked_error(self.directory, _read(self.path)) from None
            # The file may have been removed by the holder that just ended;
            # then this lock is on a file nobody else sees: start again.
            try:
                same_file = os.path.samestat(os.fstat(descriptor), os.stat(self.path))
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(descriptor)
        previous = _read(self.path)
        if previous and self.announce is not None:
            self.announce(
                f"Note: taking over '{self.directory}' from {_describe(previous)}, which ended "
                "without releasing it."
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(record).encode(), 0)
        os.fsync(descriptor)
        self._descriptor = descriptor
        return self

    def __exit__(self, *exc_info):
        try:
            os.remove(self.path)  # while still holding the lock
        except FileNotFoundError:
            pass
        os.close(self._descriptor)  # releases the lock
        self._descriptor = None
        return False
