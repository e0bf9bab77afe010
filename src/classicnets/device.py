"""Choosing the device a command runs on, and what that device computes well: the one rule
every subcommand follows.

``auto`` takes a CUDA GPU, then Apple's GPU (MPS), then the CPU. Whether the CPU computes
bf16 natively (:func:`cpu_bf16_support`) decides whether bf16 autocast there is a gain or a
loss: without AVX-512 BF16, AMX or ARM's BF16 extension, oneDNN emulates bf16 and a training
step is several times slower than in float32 (BENCHMARKS.md, "bf16 on the CPU").
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")

# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) below its first one with bf16 instructions: under any of
# these oneDNN runs bf16 through conversions, even on a CPU that has them.
ONEDNN_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                      "AVX512_CORE_VNNI"})
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names
ARM_BF16_FLAG = "bf16"  # /proc/cpuinfo's "Features" on Linux; macOS answers FEAT_BF16 through sysctl
CPUINFO = Path("/proc/cpuinfo")


def mps_available() -> bool:
    """Whether Apple's GPU can be used (a Mac with Apple silicon and a torch built for it)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA, else MPS, else the CPU; a GPU asked for by name but absent is refused."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    if name == "mps" and not mps_available():
        raise UserError("device mps was asked for but Apple's GPU (MPS) is not available here; use --device cpu.")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """How reports name the device: the GPU's model, or the CPU with its thread count."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


def channels_last_helps(device: torch.device) -> bool:
    """Whether NHWC convolutions are worth asking for on ``device``: they speed up cuDNN and
    oneDNN, but MPS runs their backward pass far slower than NCHW, so it keeps NCHW."""
    return device.type != "mps"


@dataclass(frozen=True)
class CpuBf16Support:
    """Whether this CPU computes bf16 natively, and the words that say why."""

    native: bool
    reason: str


def cpu_bf16_support() -> CpuBf16Support:
    """Native bf16 on this CPU: x86 AVX-512 BF16 or AMX, or ARM's BF16 extension, and oneDNN
    not capped below them by ``ONEDNN_MAX_CPU_ISA``."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap in ONEDNN_ISAS_WITHOUT_BF16:
        return CpuBf16Support(False, f"ONEDNN_MAX_CPU_ISA={cap} keeps oneDNN below its bf16 instructions")
    flags = cpu_flags()
    found = [flag for flag in X86_BF16_FLAGS if flag in flags]
    if is_arm() and ARM_BF16_FLAG in flags:
        found.append("ARM BF16")
    if found:
        return CpuBf16Support(True, f"this CPU computes bf16 natively ({', '.join(found)})")
    return CpuBf16Support(False, "this CPU has no native bf16 (AVX-512 BF16, AMX or ARM BF16)")


def is_arm() -> bool:
    return platform.machine().lower() in ("arm64", "aarch64")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, lower case: Linux's /proc/cpuinfo, or macOS's sysctl for ARM BF16.
    Empty where neither answers (then nothing counts as native)."""
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    if platform.system() == "Darwin" and is_arm() and _sysctl("hw.optional.arm.FEAT_BF16") == "1":
        return frozenset({ARM_BF16_FLAG})
    return frozenset()


def _sysctl(name: str) -> str:
    try:
        result = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()
