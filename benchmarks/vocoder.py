"""Vocoder and mel front-end speed: real-time factor (audio seconds per wall-clock second).

    python benchmarks/vocoder.py [--seconds 10] [--device cpu] [--repeats 3]

Rows: the log-mel front end at HIFIGAN_22K and SSL_16K, HiFi-GAN V1/V2/V3 (random init: speed
does not depend on the weights) in fp32 and under bf16 autocast, and Griffin-Lim (32 iterations)
at both mel configs. Each row is the best of --repeats timed runs after one warm-up run, one
utterance of --seconds at a time. Prints a markdown table; no data is needed.

bf16 rows are forced (what --bf16 auto picks is printed above the table). Where the device has no
native bf16 they run 35-100x slower than fp32, so there they time one SLOW_BF16_SECONDS utterance
once. --emulate-avx2 reruns under emosteer.precision.AVX2_ENV: dispatch as on an AVX2-only CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from emosteer.precision import bf16_native, machine_line, rerun_as_avx2
from emosteer.synthesis.hifigan import VERSIONS
from emosteer.synthesis.mel import HIFIGAN_22K, SSL_16K, MelConfig, log_mel_spectrogram, n_frames
from emosteer.synthesis.vocoders import GriffinLim, HiFiGAN

SEED = 0
SLOW_BF16_SECONDS = 1.0  # HiFi-GAN V1 at 0.02x real time: 1 s of audio already takes ~50 s
LOG_MEL_MEAN = -5.0  # a plausible speech level, so Griffin-Lim's NNLS sees realistic magnitudes


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: kernel selection, lazy imports, librosa's filterbank cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def random_mel(cfg: MelConfig, seconds: float, device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(SEED)
    frames = n_frames(int(seconds * cfg.sample_rate), cfg)
    return (torch.randn(1, cfg.n_mels, frames, generator=gen) + LOG_MEL_MEAN).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="utterance length")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--emulate-avx2", action="store_true",
                        help="rerun dispatching as an AVX2-only CPU (emosteer.precision.AVX2_ENV)")
    args = parser.parse_args()
    if args.emulate_avx2:
        rerun_as_avx2()
    torch.manual_seed(SEED)
    device = torch.device(args.device)
    native = bf16_native(args.device)
    rows: list[tuple[str, float]] = []

    for name, cfg in (("mel 22k", HIFIGAN_22K), ("mel 16k", SSL_16K)):
        wav = torch.from_numpy(np.random.default_rng(SEED).standard_normal(
            int(args.seconds * cfg.sample_rate)).astype(np.float32) * 0.1)[None].to(device)
        t = best_time(lambda w=wav, c=cfg: log_mel_spectrogram(w, c), args.repeats)
        rows.append((name, args.seconds / t))

    for version, hcfg in VERSIONS.items():
        model = HiFiGAN(hcfg).to(device).eval()
        for label, bf16 in (("fp32", False), ("bf16", True)):
            slow = bf16 and not native
            seconds = min(args.seconds, SLOW_BF16_SECONDS) if slow else args.seconds
            mel = random_mel(HIFIGAN_22K, seconds, args.device)

            def run(m=model, x=mel, low=bf16):
                ctx = (torch.autocast(device.type, dtype=torch.bfloat16) if low
                       else contextlib.nullcontext())
                with torch.inference_mode(), ctx:
                    m(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
            name = f"hifigan {version} {label}" + (f" (forced, {seconds:g} s, once)" if slow else
                                                   " (forced)" if bf16 else "")
            rows.append((name, seconds / best_time(run, 1 if slow else args.repeats)))

    for name, cfg in (("griffinlim 22k", HIFIGAN_22K), ("griffinlim 16k", SSL_16K)):
        gl = GriffinLim(cfg).to(device)
        mel = random_mel(cfg, args.seconds, args.device)
        t = best_time(lambda g=gl, x=mel: g(x), args.repeats)
        rows.append((f"{name} ({gl.n_iter} it)", args.seconds / t))

    print(f"machine: {machine_line()}")
    print(f"device {args.device}, {args.seconds:g} s utterances; --bf16 auto picks "
          f"{'bf16' if native else 'fp32'} here\n")
    print("| row | x real time |\n|---|---|")
    for name, rtf in rows:
        shown = f"{rtf:.1f}" if rtf >= 1 else f"{rtf:.3f}"  # forced bf16 on AVX2: ~0.02x
        print(f"| {name} | {shown} |")


if __name__ == "__main__":
    main()
