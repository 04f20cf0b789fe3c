"""Steering speed: 10 s of speech through encode -> mapper -> vocoder, latent mode.

    python benchmarks/steer.py [--seconds 10] [--threads 2] [--device cpu] [--repeats 2]
                               [--vocoders hifigan-universal,v3] [--bf16] [--emulate-avx2]

The encoder is wav2vec2-base's architecture truncated at layer 5 (random init: speed does not
depend on the weights; no download), the mapper is MapperConfig's default size. Vocoders are
registered names or directories (`hifigan-universal`: the real jik876 UNIVERSAL_V1 weights) or
v1/v2/v3 for a random-weight HiFi-GAN of that size. Input is real speech when ../shared/data
RAVDESS is present (clips concatenated to --seconds), else the Piper voice.

Rows time the whole `Steerer.steer` call per latent decoder (differential: two mapper passes
as one batch plus the input's mel; full: one pass) and its parts. fp32 always; --bf16 adds bf16
rows (encoder weights in bf16, mapper and vocoder under autocast), which only pays on hardware
with native bf16. Real-time factor = audio seconds / wall seconds; > 1 is faster than real
time. "differential overhead" is the differential steer's wall time over the full one's.
--emulate-avx2 reruns with the AVX2 kernels only (the project's AVX2-only machines' codepath).
"""

from __future__ import annotations

import argparse
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
from emosteer.precision import machine_line, rerun_as_avx2
from emosteer.steering.steer import SteerConfig, Steerer
from emosteer.synthesis.hifigan import VERSIONS
from emosteer.synthesis.mapper import Mapper, MapperConfig
from emosteer.synthesis.vocoders import HiFiGAN, load_vocoder

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


def vocoder(name: str, device: str):
    if name in VERSIONS:
        torch.manual_seed(SEED)
        return HiFiGAN(VERSIONS[name]).eval().to(device), f"HiFi-GAN {name} (random weights)"
    return load_vocoder(name, device=device), name


def bench(st: Steerer, wav: np.ndarray, label: str, precision: str, repeats: int) -> list:
    """One table row per latent decoder: real-time factors of the whole steer and its parts."""
    secs = len(wav) / SAMPLE_RATE
    t_enc = timed(lambda: st.frames(wav), repeats)
    feats, steered, tracks = st.push(wav, 0.5, "all")
    t_pro = timed(lambda: st.prosody_tracks(wav, feats.shape[0]), repeats)
    t_map1 = timed(lambda: st.map_frames([steered], tracks), repeats)
    t_map2 = timed(lambda: st.map_frames([steered, feats], tracks), repeats)
    n = st.mapper.out_length(feats.shape[0])
    t_mel = timed(lambda: st.input_mel(wav, n), repeats)
    mel = st.input_mel(wav, n)
    t_voc = timed(lambda: st.vocode(mel), repeats)
    totals = {d: timed(lambda c=SteerConfig(decode=d, match_loudness=False): st.steer(wav, 0.5, c),
                       repeats) for d in ("differential", "full")}
    return [(label, precision, d, secs / totals[d], secs / t_enc, secs / t_pro, secs / t_map,
             secs / t_in if t_in else None, secs / t_voc, totals[d] / totals["full"])
            for d, t_map, t_in in (("differential", t_map2, t_mel), ("full", t_map1, 0.0))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--vocoders", default="hifigan-universal,v3")
    ap.add_argument("--bf16", action="store_true", help="also time bf16")
    ap.add_argument("--emulate-avx2", action="store_true",
                    help="rerun with AVX2 kernels only, as on an AVX2-only CPU")
    args = ap.parse_args()
    if args.emulate_avx2:
        rerun_as_avx2()
    torch.set_num_threads(args.threads)
    wav, what = speech(args.seconds)
    secs = len(wav) / SAMPLE_RATE
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        arch = architecture_dir("facebook/wav2vec2-base", Path(tmp) / "w2v2")
        for precision in ("fp32", "bf16") if args.bf16 else ("fp32",):
            bf16 = precision == "bf16"
            enc = load_encoder(arch, layers=(LAYER,), device=args.device, bf16=bf16,
                               random_init=True, seed=SEED)
            torch.manual_seed(SEED)
            mapper = Mapper(MapperConfig(in_dim=768, layer=LAYER)).eval().to(args.device)
            axis = wrap_vector(np.random.default_rng(SEED).normal(size=768), model=str(arch),
                               layer=LAYER, source="calm", target="angry", calibration=1.0)
            for name in args.vocoders.split(","):
                voc, label = vocoder(name, args.device)
                st = Steerer(axis, encoder=enc, mapper=mapper, vocoder=voc, bf16=bf16)
                rows += bench(st, wav, label, precision, args.repeats)
    print(f"machine: {machine_line()}")
    print(f"device {args.device}, {secs:.1f} s of {what}, wav2vec2-base layer {LAYER} "
          f"(random init), best of {args.repeats}\n")
    print("| vocoder | precision | decode | steer total (x RT) | encoder | prosody tracks | "
          "mapper | input mel | vocoder | differential overhead |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, prec, dec, *rtf, over in rows:
        cells = " | ".join("-" if r is None else f"{r:.1f}" for r in rtf)
        print(f"| {name} | {prec} | {dec} | {cells} | {over:.2f}x |")


if __name__ == "__main__":
    main()
