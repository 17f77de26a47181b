"""How many CPU threads a run's tensor ops use (``cpu_threads=`` in the train config).

PyTorch starts one intra-op thread per core. For the small models that run on a CPU that is the worst
choice on a shared machine: every op is split across all cores and each thread waits at a barrier for
the slowest, so one busy neighbour process stalls every op (``scripts/cpu_threads_benchmark.py`` measures
it: on two cores shared with other jobs, the default job ran 0.08 steps/s with 2 threads and 0.51 with
1; docs/scaling.md has the table). ``auto`` therefore gives a CPU run ``cores // processes`` threads capped at
:data:`AUTO_MAX_THREADS` and uses 1 when the machine is already busy (load average at or above the
core count); GPU runs keep PyTorch's default, which only matters for data loading there.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from mambabench.utils.errors import ConfigError

#: more intra-op threads than this rarely help the models that train on a CPU (d_model <= 256)
AUTO_MAX_THREADS = 4


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else the core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores() -> float:
    """The 1-minute load average (runnable processes), 0 where the OS does not report it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def auto_cpu_threads(processes: int = 1, cores: int | None = None, load: float | None = None) -> int:
    """Threads per process for a CPU run: ``cores // processes`` (at most :data:`AUTO_MAX_THREADS`),
    or 1 when ``load`` (other work) already fills the cores."""
    cores = usable_cores() if cores is None else cores
    load = busy_cores() if load is None else load
    if load >= cores:
        return 1
    return max(1, min(AUTO_MAX_THREADS, cores // max(1, processes)))


def _processes_on_this_host(trainer_cfg: Any) -> int:
    devices = trainer_cfg.get("devices", 1) if trainer_cfg is not None else 1
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, (list, tuple)) or hasattr(devices, "__len__") and not isinstance(devices, str):
        return len(devices)
    return 1


def configure_cpu_threads(setting: int | str | None, trainer_cfg: Any = None) -> int | None:
    """Apply ``cpu_threads``: an int sets ``torch.set_num_threads``; ``auto`` chooses for CPU runs
    (see the module docstring); None leaves PyTorch's default. Returns the thread count set, or None."""
    if setting is None:
        return None
    accelerator = str(trainer_cfg.get("accelerator", "cpu")) if trainer_cfg is not None else "cpu"
    if setting == "auto":
        if accelerator not in ("cpu",):
            return None
        threads = auto_cpu_threads(_processes_on_this_host(trainer_cfg))
    elif isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        threads = setting
    else:
        raise ConfigError(
            f"cpu_threads={setting!r} is not valid: use auto, null (PyTorch's default) "
            "or a positive number of threads"
        )
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    rank_zero_info(f"using {threads} CPU thread(s) for tensor ops (cpu_threads={setting})")
    return threads
