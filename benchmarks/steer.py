"""Steering speed: 10 s of speech through encode -> mapper -> HiFi-GAN, latent mode.

    python benchmarks/steer.py [--seconds 10] [--threads 2] [--device cpu] [--repeats 2]

The encoder is wav2vec2-base's architecture truncated at layer 5 (random init: speed does not
depend on the weights; no download), the mapper is MapperConfig's default size, the vocoders are
HiFi-GAN V1 (the public jik876 quality) and V3 (the small one) with random weights. Input is real
speech when ../shared/data RAVDESS is present (clips concatenated to --seconds), else the Piper
voice. Rows time the whole `Steerer.steer` call and its parts (encoder, prosody tracks, mapper +
vocoder), in fp32 and with --bf16 (encoder weights in bf16, mapper and vocoder under autocast).
Real-time factor = audio seconds / wall seconds; > 1 is faster than real time.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emosteer.audio import SAMPLE_RATE, load_audio
from emosteer.axes import wrap_vector
from emosteer.embeddings.encoders import load_encoder
from emosteer.embeddings.fallback import architecture_dir
from emosteer.errors import EmosteerError
from emosteer.steering.steer import SteerConfig, Steerer
from emosteer.synthesis.hifigan import VERSIONS
from emosteer.synthesis.mapper import Mapper, MapperConfig
from emosteer.synthesis.vocoders import HiFiGAN

LAYER = 5
SHARED_RAVDESS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ravdess"
SEED = 0


def speech(seconds: float) -> tuple[np.ndarray, str]:
    clips = sorted(SHARED_RAVDESS.glob("Actor_0*/*.flac")) if SHARED_RAVDESS.is_dir() else []
    if clips:
        parts, total = [], 0
        for c in clips:
            parts.append(load_audio(c))
            total += len(parts[-1])
            if total >= seconds * SAMPLE_RATE:
                break
        return np.concatenate(parts)[: int(seconds * SAMPLE_RATE)], "RAVDESS speech"
    from emosteer.audio import resample

    try:
        from emosteer.tts.backends import synthesize

        text = "The meeting starts at nine tomorrow morning, so please be on time. " * 4
        wav, sr = synthesize(text, backend="piper")
    except (ImportError, EmosteerError):  # e.g. a GPU box without the tts extra or its voice
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = 120 * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
        wav = (0.1 * env * sum(np.sin(k * phase) / k for k in range(1, 20))).astype(np.float32)
        return wav, "synthetic harmonic signal"
    wav = resample(wav, sr, SAMPLE_RATE)
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(wav)))
    return np.tile(wav, reps)[: int(seconds * SAMPLE_RATE)], "Piper speech"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--vocoders", default="v1,v3")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wav, what = speech(args.seconds)
    secs = len(wav) / SAMPLE_RATE
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        arch = architecture_dir("facebook/wav2vec2-base", Path(tmp) / "w2v2")
        for precision in ("fp32", "bf16"):
            bf16 = precision == "bf16"
            enc = load_encoder(arch, layers=(LAYER,), device=args.device, bf16=bf16,
                               random_init=True, seed=SEED)
            torch.manual_seed(SEED)
            mapper = Mapper(MapperConfig(in_dim=768, layer=LAYER)).eval().to(args.device)
            axis = wrap_vector(np.random.default_rng(SEED).normal(size=768), model=str(arch),
                               layer=LAYER, source="calm", target="angry", calibration=1.0)
            for name in args.vocoders.split(","):
                voc = HiFiGAN(VERSIONS[name]).eval().to(args.device)
                st = Steerer(axis, encoder=enc, mapper=mapper, vocoder=voc, bf16=bf16)
                cfg = SteerConfig(mode="latent", match_loudness=False)
                t_enc = timed(lambda s=st: s.frames(wav), args.repeats)
                frames = st.frames(wav)
                try:
                    t_pro = timed(lambda s=st, f=frames: s.prosody_tracks(wav, f.shape[0]),
                                  args.repeats)
                    tracks = st.prosody_tracks(wav, frames.shape[0])
                    total = timed(lambda s=st, c=cfg: s.steer(wav, 0.5, c), args.repeats)
                except ImportError:  # no pyworld (it has no binary wheel): time the rest
                    t_pro = total = float("nan")
                    tracks = np.zeros((3, frames.shape[0]), np.float32)
                t_dec = timed(lambda s=st, f=frames, t=tracks: s.decode(f, t), args.repeats)
                rows.append((f"HiFi-GAN {name}", precision, secs / total, secs / t_enc,
                             secs / t_pro, secs / t_dec))
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {secs:.1f} s of {what}, "
          f"wav2vec2-base layer {LAYER}, best of {args.repeats}\n")
    print("| vocoder | precision | steer total (x RT) | encoder | prosody tracks | mapper + vocoder |")
    print("|---|---|---|---|---|---|")
    for name, prec, *rtf in rows:
        print(f"| {name} | {prec} | " + " | ".join(f"{r:.2f}" for r in rtf) + " |")


if __name__ == "__main__":
    main()
