"""Writing files and directories so that a reader never sees half of one.

Everything the library writes for keeps (presets, checkpoints, exports,
logs) is first written to a hidden staging entry beside its destination and
then renamed into place. A staging entry's name carries the host and process
that own it (`.preset-<host>-<pid>-<random>`), so the next run can sweep the
entries of processes that died mid-write (`sweep_stale_staging`) without
touching those of a process still writing. Staging directories get the
permissions the user's umask gives a new directory (`tempfile` would make
them private, `drwx------`).

Example:

```python
staging = make_staging_directory(parent, ".preset")
...  # write the files into staging
replace_directory(staging, os.path.join(parent, "my_preset"))
```
"""

import os
import re
import secrets
import shutil
import socket
import tempfile
import threading

_UMASK_LOCK = threading.Lock()
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"


def current_umask():
    """The process's umask (read by setting and restoring it)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def staging_name(prefix, suffix=""):
    """A fresh hidden name `<prefix>-<host>-<pid>-<random><suffix>`."""
    return f"{prefix}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def make_staging_directory(parent, prefix):
    """Creates an empty staging directory in `parent` (created if needed)
    with the umask's permissions; returns its path."""
    os.makedirs(parent, exist_ok=True)
    while True:
        path = os.path.join(parent, staging_name(prefix))
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


def _owner(name, prefix):
    """`(host, pid)` of a staging entry's name, or None if it is not one."""
    match = re.match(re.escape(prefix) + r"-([A-Za-z0-9_]+)-(\d+)-[0-9a-f]{8}", name)
    return (match.group(1), int(match.group(2))) if match else None


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_staging(parent, prefixes):
    """Removes staging entries in `parent` left by dead processes of this
    host (an interrupted save); returns the removed paths.

    Entries of live processes and of other hosts are kept.
    """
    removed = []
    if not os.path.isdir(parent):
        return removed
    for name in os.listdir(parent):
        for prefix in prefixes:
            owner = _owner(name, prefix)
            if owner is None or owner[0] != _HOST or _process_alive(owner[1]):
                continue
            path = os.path.join(parent, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
            removed.append(path)
            break
    return removed


def replace_directory(staging, target):
    """Moves the complete directory `staging` to `target`, atomically.

    A missing `target` is created by one rename. An existing one is first
    renamed aside into a hidden directory beside it, then `staging` takes
    its place and the old copy is deleted: at no moment does `target` hold a
    mix of old and new files. Both paths must be on the same file system
    (create `staging` beside `target`).
    """
    if not os.path.exists(target):
        os.replace(staging, target)
        return
    retired = make_staging_directory(os.path.dirname(os.path.abspath(target)), ".retired")
    os.replace(target, os.path.join(retired, "old"))
    os.replace(staging, target)
    shutil.rmtree(retired)


def write_text_atomically(path, text):
    """Writes `text` to `path` through a staging file and a rename, with
    the umask's file permissions."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=staging_name(".partial") + ".", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(staging, 0o666 & ~current_umask())
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise


STAGING_PREFIXES = (".preset", ".ckpt", ".retired", ".partial")
