"""Extraction throughput and memory: wav2vec2-base geometry (random init), features at layer 5.

    python benchmarks/extract.py [--seconds 60] [--long-minutes 10] [--device auto]

Rows (audio seconds encoded per wall-clock second, one file at a time, after a warm-up):
  baseline       the seed's way: a full HF forward with output_hidden_states=True, fp32, no_grad
  emosteer fp32  load_encoder(layers=[5]): layers 6-12 dropped, stop after layer 5, inference_mode
  emosteer bf16  the same under bf16 autocast
Then the peak RSS of a child process that runs Encoder.encode_long on a --long-minutes file.
Prints a markdown table. Synthetic audio (harmonic tones with noise), so no data is needed.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

SR = 16_000
LAYER = 5  # the seed's layer
CLIP_RANGE_S = (4.0, 8.0)
SEED = 0
RSS_LIMIT_GB = 2.0


def synth(seconds: float, rng: np.random.RandomState) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(90, 250) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
    wav = sum(np.sin(k * phase) / k for k in range(1, 8)) * env
    return (0.2 * wav + 0.01 * rng.randn(t.size)).astype(np.float32)


def make_clips(total_s: float) -> list[np.ndarray]:
    rng = np.random.RandomState(SEED)
    clips, acc = [], 0.0
    while acc < total_s:
        s = min(rng.uniform(*CLIP_RANGE_S), max(total_s - acc, CLIP_RANGE_S[0]))
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


def run_encoder(enc, clips) -> list[np.ndarray]:
    return [enc.encode(wav)[0] for wav in clips]


def timed(fn, clips, warm):
    fn(warm)
    t = time.perf_counter()
    res = fn(clips)
    return time.perf_counter() - t, res


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
    ap.add_argument("--long-minutes", type=float, default=10.0, help="file for the RSS row")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    if args.rss_child:
        rss_child(args.rss_child, device)
        return 0

    from emosteer.audio import save_audio
    from emosteer.embeddings.encoders import load_encoder

    clips = make_clips(args.seconds)
    warm = clips[:1]
    audio_s = sum(len(c) for c in clips) / SR
    rows = []
    t_base, ref = timed(partial(run_baseline, baseline_model(device), device=device), clips, warm)
    rows.append(("baseline (full HF forward, output_hidden_states, fp32)", t_base, 0.0))
    with tempfile.TemporaryDirectory() as d:
        for bf16 in (False, True):
            enc = load_encoder(model_dir(Path(d)), layers=[LAYER], device=device, bf16=bf16,
                               random_init=True, seed=SEED)
            t, res = timed(partial(run_encoder, enc), clips, warm)
            err = max(float(np.linalg.norm(a - b) / np.linalg.norm(b))
                      for a, b in zip(res, ref, strict=True))
            rows.append((f"emosteer {'bf16 autocast' if bf16 else 'fp32'} (layers 1-5 only)",
                         t, err))
            del enc

    with tempfile.TemporaryDirectory() as d:
        long_path = Path(d) / "long.flac"
        rng = np.random.RandomState(SEED + 1)
        parts = [synth(60.0, rng) for _ in range(int(np.ceil(args.long_minutes)))]
        wav = np.concatenate(parts)[: int(args.long_minutes * 60 * SR)]
        save_audio(long_path, wav, SR)
        del wav, parts
        res = subprocess.run([sys.executable, __file__, "--rss-child", str(long_path),
                              "--device", device], capture_output=True, text=True, check=True)
        rss = json.loads(res.stdout.strip().splitlines()[-1])

    print(f"device: {device} ({platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"audio: {len(clips)} synthetic clips, {audio_s:.1f} s in total, one file at a time; "
          f"layer {LAYER} of wav2vec2-base geometry (random init)\n")
    print("| configuration | audio s / wall s | speedup | rel. error vs baseline |")
    print("|---|---:|---:|---:|")
    for name, t, err in rows:
        print(f"| {name} | {audio_s / t:.1f} | {t_base / t:.2f}x | {err:.1e} |")
    ok = "ok" if rss["peak_gb"] <= RSS_LIMIT_GB else "OVER"
    print(f"\nencode_long on a {args.long_minutes:g}-minute file: peak RSS {rss['peak_gb']:.2f} GB "
          f"(limit {RSS_LIMIT_GB:g} GB: {ok}), {rss['frames']} frames in {rss['wall']:.1f} s "
          f"({args.long_minutes * 60 / rss['wall']:.1f} audio s / wall s, fp32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
