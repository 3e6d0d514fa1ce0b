"""labelcut/_cpu.py: numpy's AVX2 sort kernels on AMD Zen 4, chosen before numpy is imported.

The CPU is read from ``/proc/cpuinfo`` text; the tests hand it other CPUs' text and run
fresh interpreters, since numpy takes the variable only when it is first imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelcut import _cpu

FLAGS_ZEN3 = "fpu sse sse2 avx avx2 fma bmi2"
FLAGS_ZEN4 = FLAGS_ZEN3 + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vbmi2"


def block(vendor: str, family: int, flags: str) -> str:
    return f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nflags\t\t: {flags}\n"


@pytest.mark.parametrize(
    ("vendor", "family", "flags", "slow"),
    [
        ("AuthenticAMD", 25, FLAGS_ZEN4, True),  # Zen 4
        ("AuthenticAMD", 25, FLAGS_ZEN3, False),  # Zen 3: no AVX-512, numpy uses AVX2
        ("AuthenticAMD", 26, FLAGS_ZEN4, False),  # Zen 5: compress-store in hardware
        ("GenuineIntel", 6, FLAGS_ZEN4, False),  # Intel's AVX-512 sort is the fast one
        ("AuthenticAMD", 25, FLAGS_ZEN4.replace("avx512f", "avx512fx"), False),  # whole words
    ],
)
def test_slow_avx512_sort_names_zen4_only(vendor: str, family: int, flags: str, slow: bool):
    assert _cpu.slow_avx512_sort(block(vendor, family, flags)) is slow


def test_slow_avx512_sort_reads_the_first_processor_and_survives_odd_text():
    zen4, intel = block("AuthenticAMD", 25, FLAGS_ZEN4), block("GenuineIntel", 6, FLAGS_ZEN4)
    assert _cpu.slow_avx512_sort(zen4 + "\n" + intel)
    assert not _cpu.slow_avx512_sort(intel + "\n" + zen4)
    assert not _cpu.slow_avx512_sort("")
    assert not _cpu.slow_avx512_sort("no colon here\n:::\n")


@pytest.mark.parametrize(
    ("numpy_version", "names"),
    [
        ("2.4.6", "X86_V4"),
        ("3.1.0", "X86_V4"),
        ("2.3.5", "AVX512_SKX"),
        ("1.26.4", "AVX512_SKX"),
        ("2.5.0.dev0+git", "X86_V4"),
        ("unparsable", "X86_V4"),
    ],
)
def test_features_to_disable_follow_numpys_naming(numpy_version: str, names: str):
    value = _cpu.features_to_disable(numpy_version)
    assert names in value.split()
    assert "AVX512_ICL" in value.split()


def fresh_python(code: str, env: dict[str, str]) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object."""
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


REPORT = """
import json, os, numpy
features = numpy._core._multiarray_umath.__cpu_features__ if hasattr(numpy, "_core") else {}
print(json.dumps({"env": os.environ.get("NPY_DISABLE_CPU_FEATURES"),
                  "skx": features.get("AVX512_SKX"), "kernels": _cpu.SORT_KERNELS}))
"""


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(_cpu.ENV_NAME, None)
    return env


def on_zen4(tmp_path: Path, first: str) -> dict:
    """A fresh interpreter that runs ``first``, then prefer_avx2_sort on a Zen 4 cpuinfo."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(block("AuthenticAMD", 25, FLAGS_ZEN4))
    code = (
        f"{first}; from pathlib import Path; from labelcut import _cpu; "
        f"_cpu.prefer_avx2_sort(Path({str(cpuinfo)!r}))" + REPORT
    )
    return fresh_python(code, clean_env())


def test_zen4_gets_the_avx2_kernels_before_numpy_is_imported(tmp_path: Path):
    # On a machine that is itself Zen 4, `import labelcut` has already set it; either way
    # numpy, imported after, must leave AVX-512 out.
    seen = on_zen4(tmp_path, "import sys")
    assert seen["env"] and "AVX512_ICL" in seen["env"].split()
    assert seen["skx"] is not True  # False where the CPU has it, absent/False elsewhere


def test_other_cpus_are_left_as_numpy_chooses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(block("GenuineIntel", 6, FLAGS_ZEN4))
    monkeypatch.delenv(_cpu.ENV_NAME, raising=False)
    assert _cpu.prefer_avx2_sort(cpuinfo) == "numpy's own choice"
    assert _cpu.ENV_NAME not in os.environ
    assert _cpu.prefer_avx2_sort(tmp_path / "absent") == "numpy's own choice"  # not Linux
    assert _cpu.ENV_NAME not in os.environ


def test_a_value_the_user_set_wins_even_an_empty_one():
    env = clean_env() | {_cpu.ENV_NAME: ""}
    seen = fresh_python("from labelcut import _cpu" + REPORT, env)
    assert seen["env"] == ""
    assert "set by the user" in seen["kernels"]


def test_numpy_imported_first_keeps_its_kernels_and_children_get_the_variable(tmp_path: Path):
    seen = on_zen4(tmp_path, "import numpy")
    assert "AVX512_ICL" in seen["env"].split()  # what child processes will inherit
    assert "imported before labelcut" in seen["kernels"]
    child = fresh_python(
        "from labelcut import _cpu" + REPORT,
        clean_env() | {"NPY_DISABLE_CPU_FEATURES": seen["env"]},
    )
    assert child["skx"] is not True
