"""Machine, versions and source state recorded beside every benchmark figure."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def machine_info() -> dict:
    cpu_name = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = None
    try:
        config = np.show_config(mode="dicts")
        info = config["Build Dependencies"]["blas"]
        blas = f"{info.get('name')} {info.get('version')}"
    except Exception:  # noqa: BLE001 - informational only
        pass
    threads = {
        k: os.environ[k]
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        if k in os.environ
    }
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "processor": cpu_name or platform.processor() or None,
        "blas": blas,
        "thread_env": threads,
        "blas_threads": blas_threads(),
        "load_average_at_start": load_average(),
    }


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def blas_threads():
    """Threads of each BLAS/OpenMP pool numpy and scipy loaded (needs threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [f"{i.get('internal_api')}:{i.get('num_threads')}" for i in threadpool_info()]


def versions() -> dict:
    out = {"python": platform.python_version()}
    for package in ("numpy", "scipy", "tigramite", "specialize"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def source_state() -> dict:
    """Git commit of the checkout and a hash of any uncommitted change under src/."""

    def git(*args):
        try:
            return subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return None

    head = git("rev-parse", "HEAD")
    diff = git("diff", "HEAD", "--", "src")
    changed = git("diff", "--name-only", "HEAD", "--", "src")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "src")
    return {
        "commit": head.strip() if head else None,
        "src_diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12] if diff else None,
        "src_modified": changed.split() if changed else [],
        "src_untracked": untracked.split() if untracked else [],
    }


def run_header(args, **extra) -> dict:
    """What every benchmark records about its run: when, how called, where, with what."""
    import datetime
    import sys

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "versions": versions(),
        "source": source_state(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        **extra,
    }


def write_results(path, record: dict) -> None:
    """Write a benchmark's raw figures as JSON (creating the folder) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(f"raw figures written to {path}")
