"""Helpers shared by the benchmark scripts (run them as `python scripts/<name>.py`)."""
from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU model, for the machine line every benchmark prints."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
