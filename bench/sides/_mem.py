"""Memory of the current process, from /proc/self/status (Linux).

VmHWM is the peak RSS of this process's own address space. ``getrusage().ru_maxrss`` is not:
Linux carries the parent's peak across fork and exec, so a small side started by a larger
harness would report the harness's peak.
"""

from __future__ import annotations


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")
