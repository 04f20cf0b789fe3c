"""When to use bf16: only where the hardware runs it natively, because elsewhere it is a trap.

On x86 CPUs without AVX512_BF16 or AMX, oneDNN emulates bf16 matmuls and convolutions, and
autocast then runs 35-100x slower than fp32 on AVX2 (wav2vec2 layer-5 extraction 14.0 vs 0.2
audio s / wall s, HiFi-GAN V1 1.86x vs 0.02x real time on the project's 2-core EPYC machines)
and about 2x slower on AVX512 without the bf16 extension. So `--bf16` is tri-state:

  auto  (the default) bf16 where the device has native bf16, else fp32
  on    the same, plus a one-line notice when it falls back to fp32: never slower than fp32
  off   fp32

EMOSTEER_BF16=auto|on|off changes the default; the flag still wins. A test suite that compares
command-line results with fp32 library calls sets it to off, so that it passes on every CPU.

The library keeps taking `bf16: bool` (True forces bf16, which the benchmarks use to measure
the trap); `resolve_bf16` turns a mode into that bool, at the command line's layer.

Native bf16 on a CPU needs all of: the instruction (avx512_bf16 or amx_bf16 in /proc/cpuinfo's
flags, else torch's own cpuinfo query), ATen dispatching AVX512 kernels (so ATEN_CPU_CAPABILITY
has not capped it) and oneDNN allowed its bf16 kernels (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA
not capping it below AVX512_CORE_BF16, and torch's mkldnn bf16 check true). Other CPU
architectures count as not native: their bf16 speed was never measured here. On CUDA,
`torch.cuda.is_bf16_supported(including_emulation=False)` (compute capability 8.0 and up). The
answer is cached per process; the check itself reads one file and asks torch three questions
(about a millisecond once torch is imported).
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

BF16_MODES = ("auto", "on", "off")
BF16_ENV = "EMOSTEER_BF16"
CPUINFO = "/proc/cpuinfo"
# CPU flags (Linux names) of instructions that compute in bf16 natively: AVX512_BF16 (AMD Zen 4,
# Intel Cooper Lake and later) and AMX (Intel Sapphire Rapids and later).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# ATen capability strings whose kernels go with those instructions: both exist only on AVX512
# machines, so a lower capability means ATEN_CPU_CAPABILITY capped it (an AVX2 emulation).
NATIVE_CAPABILITIES = ("AVX512",)
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# oneDNN ISA names at or above AVX512_CORE_BF16: the bf16 one, the AMX and AVX10 families
# (which include bf16), AVX512_CORE_FP16 (Sapphire Rapids, which has AMX-BF16), and no cap.
_NATIVE_ISA_MARKS = ("BF16", "AMX", "AVX10", "FP16")
_UNCAPPED_ISA = ("ALL", "DEFAULT", "")
# What makes a process on an AVX512 machine dispatch like the project's AVX2-only ones: ATen's
# own kernels, oneDNN (bf16 and fp32 convolutions, bf16 matmuls), MKL (fp32 matmuls) and fbgemm
# (int8 matmuls) each pick their instruction set separately. ATEN_CPU_CAPABILITY alone leaves
# oneDNN on AVX512_BF16, where bf16 stays fast: it does not show the trap.
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}


@dataclass(frozen=True)
class CpuInfo:
    """What decides bf16 on this CPU (see the module docstring)."""

    machine: str  # platform.machine(): x86_64, aarch64, ...
    model: str  # /proc/cpuinfo "model name", or platform.processor()
    capability: str  # torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, DEFAULT, ...
    bf16_flags: tuple[str, ...]  # the NATIVE_BF16_FLAGS the CPU has
    onednn_bf16: bool  # torch.ops.mkldnn._is_mkldnn_bf16_supported()
    isa_cap: str | None  # ONEDNN_MAX_CPU_ISA (or DNNL_...), when set
    native_bf16: bool

    def facts(self) -> str:
        flags = "+".join(self.bf16_flags) or "no avx512_bf16/amx_bf16"
        cap = f", oneDNN ISA capped at {self.isa_cap}" if self.isa_cap else ""
        return f"torch CPU capability {self.capability}, {flags}{cap}"

    def describe(self) -> str:
        native = "native bf16" if self.native_bf16 else "no native bf16, so bf16 auto = fp32"
        return f"{self.model} ({self.machine}), {self.facts()}: {native}"


def _read_cpu_flags() -> tuple[set[str], str] | None:
    """(flags, model name) of the first CPU in /proc/cpuinfo; None where there is none."""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value.strip()
        if flags and model:
            break
    return flags, model


def _torch_cpu_facts() -> tuple[str, bool, set[str]]:
    """(ATen capability, oneDNN bf16 check, bf16 flags torch's cpuinfo sees): the fallback for
    the flags where /proc/cpuinfo is missing (not Linux)."""
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without mkldnn
        onednn = False
    seen = set()
    for flag, query in (("avx512_bf16", "_is_avx512_bf16_supported"),
                        ("amx_bf16", "_is_amx_tile_supported")):
        fn = getattr(torch.cpu, query, None)
        if fn is not None and fn():
            seen.add(flag)
    return capability, onednn, seen


def _isa_cap() -> str | None:
    for var in ISA_ENV:
        if os.environ.get(var) is not None:
            return os.environ[var].strip().upper()
    return None


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This process's CPU facts and the bf16 decision, computed once (`cpu_info.cache_clear()`
    after changing the environment, as the tests do)."""
    machine = platform.machine()
    read = _read_cpu_flags()
    capability, onednn, torch_flags = _torch_cpu_facts()
    flags, model = read if read is not None else (torch_flags, "")
    bf16_flags = tuple(f for f in NATIVE_BF16_FLAGS if f in flags)
    isa = _isa_cap()
    isa_ok = isa is None or isa in _UNCAPPED_ISA or any(m in isa for m in _NATIVE_ISA_MARKS)
    x86 = machine.lower() in ("x86_64", "amd64", "i686", "x86")
    native = bool(x86 and bf16_flags and capability in NATIVE_CAPABILITIES and onednn and isa_ok)
    return CpuInfo(machine=machine, model=model or platform.processor() or machine,
                   capability=capability, bf16_flags=bf16_flags, onednn_bf16=onednn,
                   isa_cap=isa, native_bf16=native)


@functools.cache
def cuda_bf16_native(index: int | None = None) -> bool:
    """True where CUDA device `index` (None: the current one) computes in bf16 natively."""
    import torch

    if not torch.cuda.is_available():
        return False
    if index is None:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    with torch.cuda.device(index):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def bf16_native(device: str = "cpu") -> bool:
    """Does `device` (cpu, cuda, cuda:1, ...) run bf16 natively? Other device types: no."""
    import torch

    dev = torch.device(device)
    if dev.type == "cpu":
        return cpu_info().native_bf16
    if dev.type == "cuda":
        return cuda_bf16_native(dev.index)
    return False


def check_mode(mode: str | bool | None) -> str:
    """A `--bf16` value as one of BF16_MODES: True is 'on', False 'off', None 'auto'."""
    if mode is None:
        return "auto"
    if isinstance(mode, bool):
        return "on" if mode else "off"
    text = str(mode).strip().lower()
    if text not in BF16_MODES:
        raise ValueError(f"bf16 mode {mode!r}: expected one of {', '.join(BF16_MODES)}")
    return text


def default_mode() -> str:
    """The --bf16 default: EMOSTEER_BF16 where set (an invalid value is ignored, with a
    warning), else auto."""
    value = os.environ.get(BF16_ENV)
    if value is None:
        return "auto"
    try:
        return check_mode(value)
    except ValueError as e:
        log.warning("%s: %s; using auto", BF16_ENV, e)
        return "auto"


def resolve_bf16(mode: str | bool | None, device: str = "cpu", *, notify: bool = True) -> bool:
    """Whether to run in bf16 for `mode` (auto/on/off) on `device`: 'off' never, 'auto' and
    'on' only where bf16 is native. 'on' without it logs one notice (once per device) unless
    `notify` is False, and gives fp32: bf16 is never chosen where it is slower than fp32."""
    mode = check_mode(mode)
    if mode == "off":
        return False
    if bf16_native(device):
        return True
    if mode == "on" and notify:
        _notice(str(device))
    return False


@functools.cache
def _notice(device: str) -> None:
    why = cpu_info().facts() if device.startswith("cpu") else "CUDA compute capability below " \
        "8.0, or no CUDA"
    log.warning("bf16 requested, but %s has no native bf16 (%s): using fp32, which is faster "
                "there", device, why)


def machine_line() -> str:
    """One line for benchmark output: the CPU, torch's capability and bf16 decision, threads
    and any GPU. Every benchmark prints it, so a table says which codepath it measured."""
    import torch

    line = f"{cpu_info().describe()}; torch {torch.__version__}, {torch.get_num_threads()} " \
           f"threads, {os.cpu_count()} CPUs"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        line += f"; GPU {name} ({'native bf16' if cuda_bf16_native() else 'no native bf16'})"
    return line


def rerun_as_avx2() -> None:
    """Re-execute this Python command with AVX2_ENV unless it is already set: the libraries
    read it when torch loads, so it cannot be changed later. Benchmarks' --emulate-avx2."""
    if all(os.environ.get(k) == v for k, v in AVX2_ENV.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})
