"""bf16 only where it is native: the CPU and CUDA checks (mocked), the modes, the --bf16 flag."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from emosteer import precision
from emosteer.cli import _common, build_parser

EPYC_AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}  # the project's machines: no bf16 at all
EPYC_ZEN4 = EPYC_AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"}
SAPPHIRE = EPYC_ZEN4 | {"amx_tile", "amx_bf16"}


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a CPU: cpu(flags, capability, onednn=True, machine="x86_64")."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv(precision.BF16_ENV, raising=False)

    def fake(flags, capability, onednn=True, machine="x86_64"):
        monkeypatch.setattr(precision, "_read_cpu_flags", lambda: (set(flags), "Test CPU"))
        monkeypatch.setattr(precision, "_torch_cpu_facts", lambda: (capability, onednn, set()))
        monkeypatch.setattr(precision.platform, "machine", lambda: machine)
        precision.cpu_info.cache_clear()
        precision._notice.cache_clear()

    yield fake
    precision.cpu_info.cache_clear()
    precision._notice.cache_clear()


def test_auto_is_fp32_on_avx2_and_bf16_where_native(cpu):
    cpu(EPYC_AVX2, "AVX2")
    assert not precision.cpu_info().native_bf16
    assert precision.resolve_bf16("auto", "cpu") is False
    cpu(EPYC_ZEN4, "AVX512")
    assert precision.resolve_bf16("auto", "cpu") is True
    cpu(SAPPHIRE - {"avx512_bf16"}, "AVX512")
    assert precision.resolve_bf16("auto", "cpu") is True
    assert precision.resolve_bf16("off", "cpu") is False


def test_emulated_avx2_is_not_native(cpu, monkeypatch):
    """The flag alone is not enough: a capped ATen or oneDNN dispatches the slow kernels."""
    cpu(EPYC_ZEN4, "AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert not precision.cpu_info().native_bf16
    cpu(EPYC_ZEN4 - {"avx512_bf16"}, "AVX512")  # AVX512 without bf16: emulated, 2x slower
    assert not precision.cpu_info().native_bf16
    cpu(EPYC_ZEN4, "AVX512", onednn=False)
    assert not precision.cpu_info().native_bf16
    cpu(EPYC_ZEN4, "AVX512", machine="aarch64")  # never measured: fp32
    assert not precision.cpu_info().native_bf16
    cpu(EPYC_ZEN4, "AVX512")
    for cap, native in (("AVX2", False), ("AVX512_CORE", False), ("AVX512_CORE_BF16", True),
                        ("AVX512_CORE_AMX", True), ("ALL", True)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        precision.cpu_info.cache_clear()
        assert precision.cpu_info().native_bf16 is native, cap


def test_on_falls_back_with_one_notice(cpu, caplog):
    cpu(EPYC_AVX2, "AVX2")
    with caplog.at_level(logging.WARNING, logger="emosteer.precision"):
        assert precision.resolve_bf16("on", "cpu") is False
        assert precision.resolve_bf16(True, "cpu") is False  # the library's bool means "on"
    notices = [r for r in caplog.records if "no native bf16" in r.getMessage()]
    assert len(notices) == 1 and "using fp32" in notices[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emosteer.precision"):
        assert precision.resolve_bf16("auto", "cpu") is False
    assert not caplog.records  # auto says nothing


def test_cuda_path(cpu, monkeypatch):
    cpu(EPYC_AVX2, "AVX2")
    for supported in (True, False):
        precision.cuda_bf16_native.cache_clear()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True, s=supported: s)
        assert precision.resolve_bf16("auto", "cuda") is supported
        assert precision.resolve_bf16("on", "cuda") is supported
        assert precision.resolve_bf16("off", "cuda") is False
        assert precision.resolve_bf16("auto", "cpu") is False  # the CPU is still AVX2
    precision.cuda_bf16_native.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.resolve_bf16("on", "cuda") is False
    precision.cuda_bf16_native.cache_clear()


def test_modes():
    assert [precision.check_mode(m) for m in ("auto", "ON", " off", True, False, None)] == \
        ["auto", "on", "off", "on", "off", "auto"]
    with pytest.raises(ValueError, match="expected one of auto, on, off"):
        precision.check_mode("yes")


def test_check_is_fast_and_cached():
    precision.cpu_info.cache_clear()
    start = time.perf_counter()
    first = precision.cpu_info()
    took = time.perf_counter() - start
    assert precision.cpu_info() is first
    # The budget is ~50 ms (torch is imported by then); reading one file and three
    # torch queries take about a millisecond, so 0.5 s only fails on a real regression.
    assert took < 0.5
    assert first.capability in precision.machine_line()


EXTRACT = ["extract", "root", "--format", "csv", "--model", "m", "--out", "o"]


def _parse(argv):
    return build_parser().parse_args(argv)


def test_flag_parses(cpu):
    cpu(EPYC_ZEN4, "AVX512")  # native: the mode decides
    assert (_parse(EXTRACT).bf16, _parse(EXTRACT).bf16_mode) == (True, "auto")
    assert _parse([*EXTRACT, "--bf16", "off"]).bf16 is False
    bare = _parse([*EXTRACT, "--bf16"])  # the old store_true spelling still means on
    assert (bare.bf16, bare.bf16_mode) == (True, "on")
    assert _parse([*EXTRACT, "--bf16=auto"]).bf16 is True
    with pytest.raises(SystemExit):
        _parse([*EXTRACT, "--bf16", "maybe"])
    cpu(EPYC_AVX2, "AVX2")  # not native: fp32 whatever was asked
    for extra in ([], ["--bf16"], ["--bf16", "on"], ["--bf16", "auto"]):
        assert _parse([*EXTRACT, *extra]).bf16 is False, extra


def test_flag_follows_the_final_device(cpu, monkeypatch):
    cpu(EPYC_AVX2, "AVX2")
    monkeypatch.setattr(precision, "cuda_bf16_native", lambda index=None: True)
    for argv in (["--device", "cuda", "--bf16", "on"], ["--bf16", "on", "--device", "cuda"],
                 ["--device", "cuda"], ["--bf16", "--device", "cuda:1"]):
        args = _parse([*EXTRACT, *argv])
        assert args.bf16 is True, argv
    args = _parse([*EXTRACT, "--device", "cuda", "--bf16", "on", "--device", "cpu"])
    assert (args.device, args.bf16) == ("cpu", False)


def test_notice_comes_when_the_command_runs(cpu, caplog, monkeypatch):
    cpu(EPYC_AVX2, "AVX2")
    monkeypatch.setattr(precision, "cuda_bf16_native", lambda index=None: True)
    seen = []
    with caplog.at_level(logging.WARNING, logger="emosteer.precision"):
        for argv in (["--bf16", "on", "--device", "cuda"], ["--bf16", "on"]):
            args = _parse([*EXTRACT, *argv])
            assert isinstance(args.func, _common._NoticeFirst)
            args.func.func = lambda a: seen.append(a.bf16)  # instead of running extract
            args.func(args)
    assert seen == [True, False]
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "cpu has no native bf16" in notices[0]  # not for cuda


def test_env_sets_the_default(cpu, monkeypatch):
    cpu(EPYC_ZEN4, "AVX512")
    monkeypatch.setenv(precision.BF16_ENV, "off")
    assert _parse(EXTRACT).bf16 is False
    assert _parse([*EXTRACT, "--device", "cpu"]).bf16 is False
    assert _parse([*EXTRACT, "--bf16", "on"]).bf16 is True  # the flag wins
