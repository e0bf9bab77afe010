"""The precision rule (bf16 autocast only where the device computes it natively) and the device
choice (CUDA, then Apple's MPS, then the CPU), with the machine's answers faked: these machines
have neither an Apple GPU nor, necessarily, a CPU with native bf16."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from classicnets import device as devices
from classicnets.cli.main import main
from classicnets.device import channels_last_helps, cpu_bf16_support, cpu_flags, resolve_device
from classicnets.engine import build_config
from classicnets.engine.loop import check_forward_on
from classicnets.errors import UserError

NATIVE_X86 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AMX = frozenset({"avx2", "amx_tile", "amx_bf16"})
LAPTOP_X86 = frozenset({"avx", "avx2", "fma"})


def fake_cpu(monkeypatch, flags: frozenset[str], arm: bool = False, onednn_cap: str | None = None) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    monkeypatch.setattr(devices, "is_arm", lambda: arm)
    if onednn_cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn_cap)


def precision(monkeypatch, flags, cpu_bf16="auto", arm=False, onednn_cap=None):
    fake_cpu(monkeypatch, flags, arm, onednn_cap)
    return build_config(None, {"model": "lenet5", "cpu_bf16": cpu_bf16}).precision("cpu")


@pytest.mark.parametrize("flags, arm", [(NATIVE_X86, False), (AMX, False), (frozenset({"fp", "asimd", "bf16"}), True)])
def test_auto_chooses_bf16_where_the_cpu_computes_it_natively(monkeypatch, flags, arm):
    chosen = precision(monkeypatch, flags, arm=arm)
    assert chosen.bf16 and not chosen.slower
    assert "cpu_bf16 auto: this CPU computes bf16 natively" in chosen.describe()


@pytest.mark.parametrize("flags, arm, cap", [
    (LAPTOP_X86, False, None),  # an AVX2 laptop
    (frozenset({"avx512f", "avx512bw"}), False, None),  # AVX-512 without its BF16 extension
    (frozenset({"fp", "asimd"}), True, None),  # ARM without BF16 (an M1)
    (frozenset({"bf16"}), False, None),  # the ARM flag's name on an x86 CPU means nothing
    (NATIVE_X86, False, "AVX2"),  # a bf16 CPU with oneDNN capped below it
])
def test_auto_chooses_float32_elsewhere(monkeypatch, flags, arm, cap):
    chosen = precision(monkeypatch, flags, arm=arm, onednn_cap=cap)
    assert not chosen.bf16 and chosen.describe().startswith("float32 (cpu_bf16 auto: ")


def test_a_native_cpu_under_a_high_onednn_cap_keeps_bf16(monkeypatch):
    assert precision(monkeypatch, NATIVE_X86, onednn_cap="avx512_core_amx").bf16


def test_bf16_asked_for_on_a_cpu_without_it_is_kept_and_said_to_be_slower(monkeypatch):
    chosen = precision(monkeypatch, LAPTOP_X86, cpu_bf16=True)
    assert chosen.bf16 and chosen.slower
    assert "several times slower than in float32" in chosen.describe()
    assert not precision(monkeypatch, NATIVE_X86, cpu_bf16=True).slower
    assert not precision(monkeypatch, NATIVE_X86, cpu_bf16=False).bf16


def test_other_devices_follow_their_own_rule(monkeypatch):
    fake_cpu(monkeypatch, NATIVE_X86)
    config = build_config(None, {"model": "lenet5"})
    assert config.cpu_bf16 == "auto"  # the default
    assert config.bf16_on("cuda") and not config.bf16_on("mps") and config.bf16_on("cpu")
    assert not build_config(None, {"model": "lenet5", "bf16": False}).bf16_on("cuda")


@pytest.mark.parametrize("given, expected", [("auto", "auto"), (True, True), (False, False), ("off", False)])
def test_cpu_bf16_reads_auto_true_or_false(given, expected):
    assert build_config(None, {"model": "lenet5", "cpu_bf16": given}).cpu_bf16 == expected


def test_cpu_bf16_refuses_other_words(capsys):
    with pytest.raises(UserError, match="cpu_bf16 must be true, false or auto, got 'maybe'"):
        build_config(None, {"model": "lenet5", "cpu_bf16": "maybe"})
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "lenet5", "--cpu-bf16", "maybe"])
    assert exit_info.value.code == 2 and "must be auto, true or false, got maybe" in capsys.readouterr().err


def test_cpu_flags_are_read_from_proc_cpuinfo_on_x86_and_arm(tmp_path, monkeypatch):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    monkeypatch.setattr(devices, "CPUINFO", x86)
    assert cpu_flags() == {"fpu", "sse", "avx2", "avx512_bf16"}
    monkeypatch.setattr(devices, "CPUINFO", arm)
    assert "bf16" in cpu_flags()
    monkeypatch.setattr(devices, "CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(devices.platform, "system", lambda: "Windows")
    assert cpu_flags() == frozenset() and not cpu_bf16_support().native


def fake_gpus(monkeypatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(devices, "mps_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, chosen", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_takes_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, chosen):
    fake_gpus(monkeypatch, cuda, mps)
    assert resolve_device("auto").type == chosen


def test_mps_asked_for_without_an_apple_gpu_is_refused_in_one_sentence(monkeypatch, capsys, tmp_path):
    fake_gpus(monkeypatch, False, False)
    with pytest.raises(UserError, match="device mps was asked for but Apple's GPU .MPS. is not available"):
        resolve_device("mps")
    assert main(["train", "--model", "lenet5", "--device", "mps", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "device mps was asked for" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_mps_keeps_nchw_memory():
    assert channels_last_helps(torch.device("cpu")) and channels_last_helps(torch.device("cuda"))
    assert not channels_last_helps(torch.device("mps"))
    config = build_config(None, {"model": "lenet5"})  # channels_last on by default
    assert config.channels_last_on(torch.device("cpu")) and not config.channels_last_on(torch.device("mps"))


class ShrinkingOnTheDevice(nn.Module):
    """Computes like the CPU until moved: then its pooling drops a row, as a faulty kernel would."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.conv, self.wrong = nn.Conv2d(1, 2, 3, padding=1), wrong

    def forward(self, x):
        x = self.conv(x)
        return x[:, :, :-1] if self.wrong else x

    def to(self, *args, **kwargs):
        moved = ShrinkingOnTheDevice(wrong=True)
        moved.load_state_dict(self.state_dict())
        return moved


def test_a_device_that_computes_the_model_differently_is_refused_before_training():
    check_forward_on(torch.device("cpu"), nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), 1, 8)  # the same: passes
    with pytest.raises(UserError, match=r"computes the model differently from the CPU \(output shape \(2, 2, 7, 8\) "
                                        r"instead of \(2, 2, 8, 8\)\); use --device cpu"):
        check_forward_on(torch.device("cpu"), ShrinkingOnTheDevice(), 1, 8)
