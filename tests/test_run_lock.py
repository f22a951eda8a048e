"""One process at a time in a run directory: a second is refused with an
error naming the first; a lock left by a killed process is taken over."""

import json
import os
import signal
import subprocess
import sys

import keras
import pytest
from conftest import subprocess_env
from conftest import tool_command

from keras_spiking_tf.run_lock import LOCK_FILE
from keras_spiking_tf.run_lock import RunDirectoryLock
from keras_spiking_tf.run_lock import RunDirectoryLockedError
from keras_spiking_tf.run_lock import lock_holder

HOLDER = """
import sys
from keras_spiking_tf.run_lock import RunDirectoryLock
lock = RunDirectoryLock(sys.argv[1]).__enter__()
print("locked", flush=True)
sys.stdin.read()   # hold the lock until the test closes stdin or kills us
"""


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of `tmp_path / "run"`."""
    directory = tmp_path / "run"
    directory.mkdir()
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=subprocess_env(TF_CPP_MIN_LOG_LEVEL="3"))
    assert process.stdout.readline().strip() == "locked"
    yield directory, process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_second_process_is_refused_and_a_dead_ones_lock_is_taken_over(holder):
    directory, process = holder
    record = lock_holder(str(directory))
    assert record["pid"] == process.pid and record["host"]
    with pytest.raises(RunDirectoryLockedError, match=f"in use by process {process.pid} on host"):
        with RunDirectoryLock(directory, announce=None):
            pass
    process.send_signal(signal.SIGKILL)  # dies without releasing anything itself
    process.wait()
    assert lock_holder(str(directory)) is None  # the lock file stays, but nobody holds it
    notices = []
    with RunDirectoryLock(directory, announce=notices.append):
        assert json.loads((directory / LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(RunDirectoryLockedError):  # held by this process now
            RunDirectoryLock(directory).__enter__()
    assert len(notices) == 1 and f"from process {process.pid}" in notices[0]
    assert not (directory / LOCK_FILE).exists()  # a normal end removes the file
    with RunDirectoryLock(directory, announce=notices.append):
        pass
    assert len(notices) == 1  # nothing to take over after a normal end


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the command-line tools")
@pytest.mark.parametrize("resume", [False, True])
def test_kst_train_into_a_directory_in_use_is_refused(holder, resume):
    directory, process = holder
    before = sorted(os.listdir(directory))
    result = subprocess.run(
        [*tool_command("kst-train"), "--output_dir", str(directory), "--epochs", "1",
         *(["--resume"] if resume else [])],
        capture_output=True, text=True, timeout=600, env=subprocess_env(),
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"in use by process {process.pid}" in last
    assert sorted(os.listdir(directory)) == before  # nothing written
