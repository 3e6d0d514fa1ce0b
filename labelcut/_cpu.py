"""Process set-up that has to happen before numpy is imported: its sort on AMD Zen 4.

numpy (2.2.6 and 2.4.6 measured) sorts with x86-simd-sort and, on a CPU with
AVX-512, takes its AVX-512 kernels. Those kernels lean on the compress-store instruction,
which AMD's Zen 4 (family 0x19 with AVX-512: EPYC 9004/8004, Ryzen 7000, the
cloud's m7a/c7a/c3d machines) runs in microcode. Measured on a Zen 4 EPYC with
numpy 2.4.6 and 2.2.6: sorting 1M int32 took 33 ns per element with the AVX-512
kernels and 6.5 ns with the AVX2 ones (argsort of float32: 90 ns against 35 ns).
Every label of a tune is one such sort, so there the whole tune ran 2.5x slower.

numpy chooses its kernels once, when it is imported, and lets the environment
variable ``NPY_DISABLE_CPU_FEATURES`` leave some out. :func:`prefer_avx2_sort`
sets it on Zen 4 only, and only where nobody has set it: a value the user gives,
even an empty one, wins. It is called by ``import labelcut``, so the ``labelcut``
command, the server and the worker processes they start (which inherit the
environment) import numpy with it. A program that imported numpy before labelcut
keeps the kernels it has; :data:`SORT_KERNELS` says which case a process is in.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ENV_NAME = "NPY_DISABLE_CPU_FEATURES"
# numpy 2.4 groups x86 features by microarchitecture level; older releases name them.
_DISABLE_FROM_2_4 = "X86_V4 AVX512_ICL"
_DISABLE_BEFORE_2_4 = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL"

SORT_KERNELS = "numpy's own choice"  # rewritten by prefer_avx2_sort()
_set_here: str | None = None  # the value prefer_avx2_sort() put into the environment


def slow_avx512_sort(cpuinfo: str) -> bool:
    """True for ``/proc/cpuinfo`` text of an AMD Zen 4 CPU (family 0x19 with AVX-512).

    Zen 3 (also family 0x19) has no AVX-512, so numpy already uses AVX2 there;
    Zen 5 (family 0x1a) runs compress-store in hardware.
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block is enough: all cores are alike
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") == "25"
        and "avx512f" in fields.get("flags", "").split()
    )


def features_to_disable(numpy_version: str) -> str:
    """The ``NPY_DISABLE_CPU_FEATURES`` value that leaves out AVX-512 in this numpy."""
    try:
        major, minor = (int(part) for part in numpy_version.split(".")[:2])
    except ValueError:
        return _DISABLE_FROM_2_4
    return _DISABLE_FROM_2_4 if (major, minor) >= (2, 4) else _DISABLE_BEFORE_2_4


def prefer_avx2_sort(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> str:
    """Set ``NPY_DISABLE_CPU_FEATURES`` on Zen 4 where it is unset; what was done, in words.

    ``cpuinfo_path``: where the CPU is described (a test points it at another CPU's text).
    A second call says the same as the first where the first set the variable.
    """
    global SORT_KERNELS, _set_here
    if ENV_NAME in os.environ:
        if os.environ[ENV_NAME] != _set_here:
            SORT_KERNELS = f"as {ENV_NAME}={os.environ[ENV_NAME]!r} says (set by the user)"
        return SORT_KERNELS
    SORT_KERNELS = "numpy's own choice"
    try:
        with cpuinfo_path.open(errors="replace") as file:
            cpuinfo = file.read(1 << 14)  # the first processor's block (a few KB) is enough
    except OSError:  # not Linux: nothing to read, nothing changed
        return SORT_KERNELS
    if not slow_avx512_sort(cpuinfo):
        return SORT_KERNELS
    try:
        numpy_version = version("numpy")
    except PackageNotFoundError:
        numpy_version = "2.4"
    os.environ[ENV_NAME] = _set_here = features_to_disable(numpy_version)
    if "numpy" in sys.modules:  # too late for this process; its children still get it
        SORT_KERNELS = "AVX-512 (numpy was imported before labelcut); AVX2 in child processes"
    else:
        SORT_KERNELS = f"AVX2 ({ENV_NAME}={_set_here!r}: Zen 4's AVX-512 sort is slow)"
    return SORT_KERNELS
