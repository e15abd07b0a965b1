"""What a benchmark ran on: cores, CPU model, kernel and Python, for the header of every report."""

from __future__ import annotations

import os
import platform
import sys


def cpu_model() -> str:
    """The first ``model name`` in /proc/cpuinfo (what `lscpu` shows), or the platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe() -> dict:
    """The machine as a JSON-ready dict."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {
        "cores": os.cpu_count() or 1,
        "usable_cores": usable,
        "cpu": cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
    }


def header(machine: dict) -> str:
    """One line: ``2 cores (AMD EPYC), Linux 6.1, CPython 3.11.7``."""
    cores = f"{machine['cores']} cores"
    if machine["usable_cores"] != machine["cores"]:
        cores += f" ({machine['usable_cores']} usable)"
    return f"{cores}, {machine['cpu']}, {machine['kernel']}, {machine['python']}"
