"""Extraction throughput and memory: wav2vec2-base geometry (random init), features at layer 5.

    python benchmarks/extract.py [--seconds 60] [--clip-seconds 4,8] [--batch 8] [--repeats 1]
                                 [--threads N] [--device auto] [--emulate-avx2] [--long-minutes 10]

Rows (audio seconds encoded per wall-clock second, best of --repeats after a warm-up):
  baseline       the seed's way: a full HF forward with output_hidden_states=True, fp32, no_grad,
                 one file at a time
  emosteer fp32  load_encoder(layers=[5]): layers 6-12 dropped, stop after layer 5, inference_mode
  emosteer bf16  the same under bf16 autocast, forced (the line above the table says what
                 --bf16 auto picks here); where bf16 is not native it is timed on the first
                 SLOW_BF16_SECONDS of audio only, since it is 35-100x slower there
  emosteer int8  (CPU) load_encoder(int8=True): dynamic int8 transformer linear layers
  ... batch N    (--batch N > 1) Encoder.encode_batch: N clips sorted by length, one padded batch
Columns: throughput per wall second and per CPU second of this process (all its threads: on a
shared machine the CPU figure moves much less; with --threads 1 it is what an idle core would
do), speedup vs baseline on both; worst clip's relative error vs baseline (|a - b| / |b| over its
frames); mean and worst cosine of layer-5 frames vs the baseline. Then the peak RSS of a child
process that runs Encoder.encode_long on a --long-minutes file (0 skips it). Synthetic audio
(harmonic tones with noise), so no data is needed. --emulate-avx2 reruns under
emosteer.precision.AVX2_ENV: dispatch as on an AVX2-only CPU (the project's machines).

GPU check (RAVDESS-length clips; batched should reach >= 10x the batch-1 throughput):

    python benchmarks/extract.py --device cuda --seconds 600 --clip-seconds 2,5 --batch 32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from emosteer.precision import bf16_native, machine_line, rerun_as_avx2

SR = 16_000
LAYER = 5  # the seed's layer
CLIP_RANGE_S = (4.0, 8.0)
SEED = 0
RSS_LIMIT_GB = 2.0
SLOW_BF16_SECONDS = 8.0  # a few clips: at 0.2 audio s / wall s this is already 40 s
GPU_BATCH_TARGET = 10.0  # the goal for batched vs batch-1 throughput on a GPU


def synth(seconds: float, rng: np.random.RandomState) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(90, 250) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
    wav = sum(np.sin(k * phase) / k for k in range(1, 8)) * env
    return (0.2 * wav + 0.01 * rng.randn(t.size)).astype(np.float32)


def make_clips(total_s: float, clip_range=CLIP_RANGE_S) -> list[np.ndarray]:
    rng = np.random.RandomState(SEED)
    clips, acc = [], 0.0
    while acc < total_s:
        s = min(rng.uniform(*clip_range), max(total_s - acc, clip_range[0]))
        clips.append(synth(s, rng))
        acc += s
    return clips


def model_dir(tmp: Path) -> Path:
    """A directory with only config.json: wav2vec2-base geometry (Wav2Vec2Config defaults)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

    Wav2Vec2Config().save_pretrained(tmp)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp)
    return tmp


def baseline_model(device: str):
    import torch
    from transformers import AutoConfig, AutoModel

    # Same weights as load_encoder(random_init=True, seed=SEED) builds.
    with tempfile.TemporaryDirectory() as d:
        cfg = AutoConfig.from_pretrained(model_dir(Path(d)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = AutoModel.from_config(cfg)
    return model.eval().to(device)


def run_baseline(model, clips, device: str = "cpu") -> list[np.ndarray]:
    import torch

    out = []
    for wav in clips:
        x = (wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)  # the feature extractor's way
        with torch.no_grad():
            hs = model(torch.from_numpy(x)[None].to(device), output_hidden_states=True)
        out.append(hs.hidden_states[LAYER][0].float().cpu().numpy())
    return out


def run_encoder(enc, clips, batch: int = 1) -> list[np.ndarray]:
    if batch == 1:
        return [enc.encode(wav)[0] for wav in clips]
    return [h[0] for h in enc.encode_batch(clips, batch_size=batch)]


def timed(fn, clips, warm, repeats: int):
    """(best wall seconds, best CPU seconds of this process, result) over `repeats` passes."""
    fn(warm)
    wall = cpu = float("inf")
    res = None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        res = fn(clips)
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return (wall, cpu), res


def accuracy(res, ref) -> tuple[float, float, float]:
    """(worst relative error, mean and worst frame cosine) of `res` against `ref`."""
    pairs = list(zip(res, ref, strict=True))
    rel = max(float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in pairs)
    cos = np.concatenate([np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
                          for a, b in pairs])
    return rel, float(cos.mean()), float(cos.min())


def rss_child(path: str, device: str) -> None:
    """Runs in a fresh process: encode one long file, report peak RSS."""
    from emosteer.embeddings.encoders import load_encoder

    with tempfile.TemporaryDirectory() as d:
        enc = load_encoder(model_dir(Path(d)), layers=[LAYER], device=device, random_init=True,
                           seed=SEED)
    t = time.perf_counter()
    h = enc.encode_long(path)
    wall = time.perf_counter() - t
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"frames": int(h.shape[1]), "peak_gb": peak_kb / 2**20, "wall": wall}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="total audio per row")
    ap.add_argument("--clip-seconds", default=",".join(f"{s:g}" for s in CLIP_RANGE_S),
                    help="clip length range MIN,MAX in seconds (default 4,8)")
    ap.add_argument("--batch", type=int, default=1, help="also time padded batches of N clips")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per row (best counts)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="file for the RSS row")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    ap.add_argument("--emulate-avx2", action="store_true",
                    help="rerun dispatching as an AVX2-only CPU (emosteer.precision.AVX2_ENV)")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.emulate_avx2:
        rerun_as_avx2()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    if args.rss_child:
        rss_child(args.rss_child, device)
        return 0

    from emosteer.audio import save_audio
    from emosteer.embeddings.encoders import load_encoder

    lo, hi = (float(x) for x in args.clip_seconds.split(","))
    clips = make_clips(args.seconds, (lo, hi))
    warm = clips[:1]
    audio_s = sum(len(c) for c in clips) / SR
    cpu = torch.device(device).type == "cpu"
    native = bf16_native(device)
    starts = np.cumsum([0.0] + [len(c) / SR for c in clips])
    slow = [c for c, start in zip(clips, starts, strict=False) if start < SLOW_BF16_SECONDS]
    batches = (1, args.batch) if args.batch > 1 else (1,)
    configs = [("fp32", {}), ("bf16 autocast", {"bf16": True})]
    if cpu:
        configs.append(("int8 (transformer linears)", {"int8": True}))
    rows = []  # (name, seconds of audio, wall seconds, accuracy or None, note)
    t_base, ref = timed(partial(run_baseline, baseline_model(device), device=device), clips,
                        warm, args.repeats)
    rows.append(("baseline: full HF forward, output_hidden_states, fp32", audio_s, t_base, None,
                 ""))  # t_base: (wall, CPU) seconds
    with tempfile.TemporaryDirectory() as d:
        for label, kw in configs:
            enc = load_encoder(model_dir(Path(d)), layers=[LAYER], device=device,
                               random_init=True, seed=SEED, **kw)
            subset = slow if kw.get("bf16") and not native else clips
            for batch in batches:
                if not cpu:
                    torch.cuda.reset_peak_memory_stats()
                t, res = timed(partial(run_encoder, enc, batch=batch), subset,
                               subset[:batch], args.repeats)
                note = "" if cpu else \
                    f", peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
                name = f"emosteer {label}" + (f", batch {batch}" if batch > 1 else "")
                rows.append((name, sum(len(c) for c in subset) / SR, t,
                             accuracy(res, ref[:len(subset)]), note))
            del enc

    rss = None
    if args.long_minutes > 0:
        with tempfile.TemporaryDirectory() as d:
            long_path = Path(d) / "long.flac"
            rng = np.random.RandomState(SEED + 1)
            parts = [synth(60.0, rng) for _ in range(int(np.ceil(args.long_minutes)))]
            wav = np.concatenate(parts)[: int(args.long_minutes * 60 * SR)]
            save_audio(long_path, wav, SR)
            del wav, parts
            res = subprocess.run([sys.executable, __file__, "--rss-child", str(long_path),
                                  "--device", device], capture_output=True, text=True,
                                 check=True)
            rss = json.loads(res.stdout.strip().splitlines()[-1])

    print(f"machine: {machine_line()}")
    print(f"device {device}; --bf16 auto picks {'bf16' if native else 'fp32'} here")
    print(f"audio: {len(clips)} synthetic clips of {lo:g}-{hi:g} s, {audio_s:.1f} s in total; "
          f"layer {LAYER} of wav2vec2-base geometry (random init); best of {args.repeats}\n")
    print("| configuration | audio s / wall s | audio s / CPU s | speedup (wall / CPU) "
          "| rel. error vs baseline | frame cosine vs baseline (mean / min) |")
    print("|---|---:|---:|---:|---:|---:|")
    base_wall, base_cpu = audio_s / t_base[0], audio_s / t_base[1]
    rates = {}
    for name, secs, (wall, cpu_s), acc, note in rows:
        rate, cpu_rate = secs / wall, secs / cpu_s
        rates[name] = rate
        on = f" (on {secs:.0f} s{note})" if secs < audio_s else (f" ({note[2:]})" if note else "")
        cells = "- | -" if acc is None else f"{acc[0]:.1e} | {acc[1]:.5f} / {acc[2]:.5f}"
        print(f"| {name}{on} | {rate:.1f} | {cpu_rate:.1f} | {rate / base_wall:.2f}x / "
              f"{cpu_rate / base_cpu:.2f}x | {cells} |")
    if args.batch > 1:
        for label, _ in configs:
            one, many = rates.get(f"emosteer {label}"), rates.get(
                f"emosteer {label}, batch {args.batch}")
            if one and many:
                goal = f" (GPU target >= {GPU_BATCH_TARGET:g}x)" if not cpu else ""
                print(f"\n{label}: batch {args.batch} runs {many / one:.2f}x batch 1{goal}")
    if rss is not None:
        ok = "ok" if rss["peak_gb"] <= RSS_LIMIT_GB else "OVER"
        print(f"\nencode_long on a {args.long_minutes:g}-minute file: peak RSS "
              f"{rss['peak_gb']:.2f} GB (limit {RSS_LIMIT_GB:g} GB: {ok}), {rss['frames']} frames "
              f"in {rss['wall']:.1f} s ({args.long_minutes * 60 / rss['wall']:.1f} audio s / "
              f"wall s, fp32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
