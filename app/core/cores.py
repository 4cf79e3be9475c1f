"""How many cores this process may really use, for sizing thread pools.

`os.cpu_count()` counts the host's cores. In a container limited by a cpuset (`docker --cpuset-cpus`,
`taskset`) or a CPU quota (`docker --cpus`, Kubernetes CPU limits) that overstates what the process gets, and
torch with one thread per host core on 2 allowed cores spends its time at barriers waiting for preempted threads.
"""

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" in µs, or "max <period>"


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The cores this process may run on (its CPU affinity), further capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call outside Linux
        cores = os.cpu_count() or 1
    quota = _quota_cores(cpu_max)
    return max(1, min(cores, quota)) if quota else max(1, cores)


def _quota_cores(cpu_max: Path) -> int | None:
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):  # no cgroup v2 here, or a file of another shape
        return None
    if quota == "max":
        return None
    return math.ceil(int(quota) / int(period))
