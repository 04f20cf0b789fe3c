"""Streaming steering: latency (input sample -> output sample) and real-time factor.

    python benchmarks/stream.py [--threads 2] [--device cpu] [--seconds 6] [--blocks 100,200]
                                [--mapper DIR] [--int8] [--emulate-avx2]

The wav2vec2-base architecture (random init, layer 5: speed does not depend on the weights; no
download), a default-size mapper and a small HiFi-GAN (V3, and V2) or Griffin-Lim, steering a
real RAVDESS clip (../shared/data; Piper speech or a synthetic signal otherwise) block by block
with `emosteer.stream.StreamingSteerer`. Per configuration:

  latency p95 = block + lookahead (algorithmic) + p95 compute of one step
  RTF         = mean compute per step / block duration   (< 1 keeps up with the input)

and the difference from offline steering of the same input (`stream.compare_outputs`: MCD on
active frames, level and F0 difference), for the latent and prosody paths. `--int8` runs the
encoder with int8 transformer linears (`load_encoder(int8=True)`); `--emulate-avx2` reruns
under emosteer.precision.AVX2_ENV (an AVX2-only CPU's kernels).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from steer import speech  # benchmarks/steer.py: RAVDESS, else Piper, else a synthetic signal

from emosteer.axes import wrap_vector
from emosteer.embeddings.encoders import load_encoder
from emosteer.embeddings.fallback import architecture_dir
from emosteer.precision import machine_line, rerun_as_avx2
from emosteer.prosody.world import ProsodyDelta
from emosteer.steering.compare import compare_outputs
from emosteer.steering.steer import SteerConfig, Steerer
from emosteer.steering.stream import StreamConfig, StreamingSteerer
from emosteer.synthesis.hifigan import VERSIONS
from emosteer.synthesis.mapper import Mapper, MapperConfig, load_mapper
from emosteer.synthesis.vocoders import GriffinLim, HiFiGAN

LAYER = 5
SEED = 0
DELTA = 0.5
# A typical learned calm -> angry delta (RAVDESS actors 01-06, README); rate is left out when
# streaming anyway.
PROSODY = ProsodyDelta(f0_shift_st=7.6, f0_range_ratio=1.49, tilt_db=7.0, energy_db=19.2,
                       rate_ratio=1.0, source="calm", target="angry")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--blocks", default="100,200", help="block lengths in ms (multiples of 20)")
    ap.add_argument("--lookahead-ms", type=float, default=60.0)
    ap.add_argument("--context-ms", type=float, default=400.0)
    ap.add_argument("--mapper", help="a trained mapper directory (wav2vec2-base layer 5) for "
                                     "meaningful quality rows; default: an untrained one")
    ap.add_argument("--int8", action="store_true", help="int8 transformer linears (CPU)")
    ap.add_argument("--emulate-avx2", action="store_true",
                    help="rerun dispatching as an AVX2-only CPU (emosteer.precision.AVX2_ENV)")
    args = ap.parse_args()
    if args.emulate_avx2:
        rerun_as_avx2()
    torch.set_num_threads(args.threads)
    wav, what = speech(args.seconds)
    rows, quality = [], []
    with tempfile.TemporaryDirectory() as tmp:
        arch = architecture_dir("facebook/wav2vec2-base", Path(tmp) / "w2v2")
        enc = load_encoder(arch, layers=(LAYER,), device=args.device, random_init=True, seed=SEED,
                           int8=args.int8)
        torch.manual_seed(SEED)
        mapper = (load_mapper(args.mapper, device=args.device) if args.mapper else
                  Mapper(MapperConfig(in_dim=768, layer=LAYER)).eval().to(args.device))
        axis = wrap_vector(np.random.default_rng(SEED).normal(size=768), model=str(arch),
                           layer=LAYER, source="calm", target="angry", calibration=1.0)
        vocoders = {"HiFi-GAN v3": HiFiGAN(VERSIONS["v3"]), "HiFi-GAN v2": HiFiGAN(VERSIONS["v2"]),
                    "Griffin-Lim": GriffinLim()}
        for vname, voc in vocoders.items():
            st = Steerer(axis, encoder=enc, mapper=mapper, vocoder=voc.eval().to(args.device),
                         prosody=PROSODY)
            for mode in ("latent", "prosody"):
                if mode == "prosody" and vname != "HiFi-GAN v3":
                    continue  # the prosody path does not use the vocoder
                for block in (float(b) for b in args.blocks.split(",")):
                    cfg = StreamConfig(mode=mode, block_ms=block, lookahead_ms=args.lookahead_ms,
                                       context_ms=args.context_ms,
                                       crossfade_ms=min(10.0, args.lookahead_ms))
                    ss = StreamingSteerer(st, DELTA, cfg)
                    ss.run(wav[: 16000])  # warm-up: first calls select kernels
                    ss.reset()
                    streamed = ss.run(wav)
                    rep = ss.latency_report()
                    rows.append((vname if mode == "latent" else "(WORLD)", mode, rep))
                    if block == float(args.blocks.split(",")[-1]):
                        offline, sr = st.steer(wav, DELTA, SteerConfig(
                            mode=mode, chunk_seconds=max(60.0, args.seconds + 1)))
                        quality.append((vname if mode == "latent" else "(WORLD)", mode,
                                        compare_outputs(streamed, offline, sr)))
    print(f"machine: {machine_line()}")
    print(f"device {args.device}, {len(wav) / 16000:.1f} s of {what}, "
          f"wav2vec2-base layer {LAYER} (random init{', int8' if args.int8 else ''}), mapper {args.mapper or 'untrained'}, "
          f"delta {DELTA}\n")
    print("| vocoder | mode | block ms | lookahead ms | context ms | compute ms (mean / p95) "
          "| latency p95 ms | RTF |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for vname, mode, r in rows:
        print(f"| {vname} | {mode} | {r['block_ms']:g} | {r['lookahead_ms']:g} | "
              f"{r['context_ms']:g} | {r['compute_ms_mean']:.0f} / {r['compute_ms_p95']:.0f} | "
              f"{r['latency_ms_p95']:.0f} | {r['rtf']:.2f} |")
    print("\nstreamed vs offline steering of the same input (largest block):\n")
    print("| vocoder | mode | MCD dB (active frames) | level diff dB | median F0 diff st |")
    print("|---|---|---:|---:|---:|")
    for vname, mode, q in quality:
        print(f"| {vname} | {mode} | {q['mcd_db']:.2f} | {q['level_db']:+.2f} | "
              f"{q['f0_diff_st']:.2f} |")


if __name__ == "__main__":
    main()
