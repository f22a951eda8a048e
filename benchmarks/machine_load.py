"""How busy the machine is with *other* work while a benchmark runs.

The load average counts the benchmark's own threads, so it cannot tell a
quiet machine running a benchmark from a busy one. `OtherCpuMeter` reads
the kernel's CPU accounting instead (Linux `/proc`): the CPU time all
processes used (`/proc/stat`, steal time of a virtual machine included)
minus the time the benchmark's own processes used (`/proc/<pid>/stat`),
as a fraction of the machine's capacity (wall time x cores) over an
interval.

Example:

```python
meter = OtherCpuMeter(own_pids=[os.getpid()])
meter.start()
...  # timed work
fraction = meter.stop()   # 0.0: nothing else ran; 0.5: half the cores
```
"""

import os
import time

def _busy_and_total_ticks():
    with open("/proc/stat", encoding="ascii") as file:
        fields = [int(v) for v in file.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def _process_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


class OtherCpuMeter:
    """Fraction of the machine's CPU used by processes not in `own_pids`.

    Args:
        own_pids: the benchmark's processes (their CPU time is not "other").
            More can be added with `add`.
    """

    def __init__(self, own_pids=()):
        self.own_pids = set(own_pids)
        self._start = None

    def add(self, pid):
        self.own_pids.add(pid)

    def _sample(self):
        busy, total = _busy_and_total_ticks()
        own = sum(_process_ticks(pid) for pid in self.own_pids)
        return busy, total, own

    def start(self):
        self._start = self._sample()

    def stop(self):
        """Other processes' share of all cores since `start` (0..1)."""
        busy0, total0, own0 = self._start
        busy1, total1, own1 = self._sample()
        if total1 <= total0:
            return 0.0
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (total1 - total0))


def quiet_check(seconds=3.0, own_pids=()):
    """`(other CPU fraction over `seconds`, 1-minute load average)` while
    this process sleeps."""
    meter = OtherCpuMeter(own_pids=[os.getpid(), *own_pids])
    meter.start()
    time.sleep(seconds)
    return meter.stop(), os.getloadavg()[0]

