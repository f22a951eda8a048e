"""Putting a fully written directory into place, never a half-written one."""

import os
import shutil
import tempfile


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
    retired = tempfile.mkdtemp(prefix=".retired-", dir=os.path.dirname(os.path.abspath(target)))
    os.replace(target, os.path.join(retired, "old"))
    os.replace(staging, target)
    shutil.rmtree(retired)
