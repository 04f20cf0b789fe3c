"""Mapper: shape/rate contract, save/load, loss, MCD, data prep cache, training and resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emosteer.artifacts import load_tensors, save_tensors
from emosteer.audio import save_audio
from emosteer.errors import ArtifactError, ConfigError
from emosteer.synthesis.data import (
    MapperExample,
    evaluate_mcd,
    mean_mel_mcd,
    mel_cepstral_distortion,
    out_frames,
    prepare_examples,
)
from emosteer.synthesis.mapper import WEIGHTS_FILE, Mapper, MapperConfig, load_mapper, mapper_loss
from emosteer.synthesis.mel import HIFIGAN_22K, SSL_16K
from emosteer.synthesis.train import train_mapper
from emosteer.training import TrainConfig

TINY = dict(hidden=32, n_blocks=2, dilations=(1, 2))


def _cfg(**kw):
    return MapperConfig.for_mel(HIFIGAN_22K, in_dim=16, **{**TINY, **kw})


def test_out_frames_rounds_half_up():
    assert out_frames(50, 50.0, 22050 / 256) == 86  # 86.13
    assert out_frames(1, 2.0, 1.0) == 1  # 0.5 -> 1, not banker's 0
    assert out_frames(5, 2.0, 1.0) == 3  # 2.5 -> 3


@pytest.mark.parametrize("mel,t_in,t_out", [(HIFIGAN_22K, 50, 86), (HIFIGAN_22K, 7, 12),
                                            (SSL_16K, 37, 37)])
def test_shape_contract_with_rate_conversion(mel, t_in, t_out):
    torch.manual_seed(0)
    m = Mapper(MapperConfig.for_mel(mel, in_dim=16, **TINY)).eval()
    y = m(torch.randn(2, 16, t_in), torch.randn(2, 3, t_in))
    assert y.shape == (2, mel.n_mels, t_out)
    assert m.out_length(t_in) == t_out


def test_transformer_and_no_prosody_variant():
    m = Mapper(_cfg(n_transformer_layers=1, n_heads=4, use_prosody=False)).eval()
    x = torch.randn(2, 16, 20)
    y = m(x, None, torch.tensor([20, 12]))
    assert y.shape == (2, 80, out_frames(20, 50.0, HIFIGAN_22K.frame_rate))
    # Padding after an utterance's length must not change its valid output frames.
    y_short = m(x[1:, :, :12], None, torch.tensor([12]))
    n = y_short.shape[2]
    assert torch.allclose(y[1, :, :n], y_short[0], atol=1e-5)


def test_input_validation():
    m = Mapper(_cfg())
    with pytest.raises(ConfigError, match="expects frames"):
        m(torch.randn(1, 8, 10), torch.randn(1, 3, 10))
    with pytest.raises(ConfigError, match="needs prosody"):
        m(torch.randn(1, 16, 10), None)
    with pytest.raises(ConfigError, match="kernel"):
        _cfg(kernel=4)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    m = Mapper(_cfg(dropout=0.1)).eval()
    m.save(tmp_path)
    assert (tmp_path / "mapper.json").is_file()
    m2 = load_mapper(tmp_path)
    assert m2.config == m.config and not m2.training
    x, p = torch.randn(1, 16, 30), torch.randn(1, 3, 30)
    assert torch.equal(m(x, p), m2(x, p))


def test_strict_loading_refuses_mismatch(tmp_path):
    Mapper(_cfg()).save(tmp_path)
    state = load_tensors(tmp_path / WEIGHTS_FILE)
    state.pop(next(iter(state)))
    save_tensors(tmp_path / WEIGHTS_FILE, state)
    with pytest.raises(ArtifactError, match="do not match"):
        load_mapper(tmp_path)
    Mapper(_cfg(hidden=48)).save(tmp_path / "other")
    (tmp_path / "other" / "mapper.json").write_text((tmp_path / "mapper.json").read_text())
    with pytest.raises(ArtifactError, match="do not match"):
        load_mapper(tmp_path / "other")
    with pytest.raises(ArtifactError, match="not a mapper directory"):
        load_mapper(tmp_path / "missing")


def test_loss_properties():
    t = torch.randn(2, 80, 40)
    assert float(mapper_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(mapper_loss(t + 0.5, t)) > 0.5
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[:, 30:] = False
    garbage = t.clone()
    garbage[:, :, 32:] += 100.0  # beyond the mask, and its 2x/4x windows, so it must not count
    assert float(mapper_loss(garbage, t, mask)) == pytest.approx(0.0, abs=1e-5)


def test_mcd_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(-5, 2, (80, 50))
    assert mel_cepstral_distortion(a, a) == 0.0
    assert mel_cepstral_distortion(a, a + 3.0) == pytest.approx(0.0, abs=1e-9)  # c0 excluded
    b = a + rng.normal(0, 1, a.shape)
    d = mel_cepstral_distortion(a, b)
    assert d > 0 and d == pytest.approx(mel_cepstral_distortion(b, a))
    assert mel_cepstral_distortion(a, b[:, :40]) == pytest.approx(
        mel_cepstral_distortion(a[:, :40], b[:, :40]))
    with pytest.raises(ConfigError):
        mel_cepstral_distortion(a, b[:40])


def test_loss_and_mcd_read_the_mels_log_base():
    """The same spectra as ln or log10 mels (SpeechT5's) give the same MCD and the same
    spectral-convergence term, so log10 mappers are trained and reported on one scale."""
    rng = np.random.default_rng(1)
    ln_a, ln_b = rng.normal(-5, 2, (80, 50)), rng.normal(-5, 2, (80, 50))
    lg_a, lg_b = ln_a / np.log(10), ln_b / np.log(10)
    assert mel_cepstral_distortion(lg_a, lg_b, log="log10") == pytest.approx(
        mel_cepstral_distortion(ln_a, ln_b))
    p, t = torch.from_numpy(ln_a)[None], torch.from_numpy(ln_b)[None]
    sc = float(torch.linalg.norm(t.exp() - p.exp()) / torch.linalg.norm(t.exp()))
    whole = float(mapper_loss(p, t))  # L1 terms + sc
    in_log10 = float(mapper_loss(p / np.log(10), t / np.log(10), log="log10"))
    assert in_log10 == pytest.approx((whole - sc) / np.log(10) + sc, rel=1e-6)


def _synthetic(n_spk=4, per=4, d=16, seed=0):
    """Targets are a fixed smooth function of the frames, so a mapper can learn them."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.3, (80, d))
    out = []
    for s in range(n_spk):
        for u in range(per):
            t = int(rng.integers(60, 160))
            frames = rng.normal(0, 1, (t, d)).astype(np.float32)
            t_out = out_frames(t, 50.0, HIFIGAN_22K.frame_rate)
            src = np.linspace(0, t - 1, t_out)
            up = np.stack([np.interp(src, np.arange(t), f) for f in frames.T])
            mel = (w @ up - 5.0).astype(np.float32)
            pros = rng.normal(0, 1, (3, t)).astype(np.float32)
            out.append(MapperExample(f"u{s}_{u}", f"spk{s}", frames, pros, mel))
    return out


def test_tiny_training_decreases_loss(tmp_path):
    ex = _synthetic()
    cfg = _cfg()
    tc = TrainConfig(lr=1e-2, batch_size=4, max_epochs=6, patience=20)
    model, rep = train_mapper(ex, cfg, tmp_path, train_cfg=tc, progress=False)
    hist = rep["result"]["history"]
    assert hist[-1]["val_loss"] < 0.8 * hist[0]["val_loss"]
    assert set(rep["train_speakers"]).isdisjoint(rep["val_speakers"])
    assert rep["val_mcd_db"] > 0 and (tmp_path / "train_report.json").is_file()
    assert torch.equal(load_mapper(tmp_path).out_proj.weight, model.out_proj.weight)


def test_resume_equals_uninterrupted(tmp_path):
    ex = _synthetic(n_spk=3, per=3)
    tc = TrainConfig(lr=3e-3, batch_size=3, max_epochs=3, patience=20)
    full, _ = train_mapper(ex, _cfg(), tmp_path / "full", train_cfg=tc, progress=False)

    def kill(meta):
        if meta["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_mapper(ex, _cfg(), tmp_path / "cut", train_cfg=tc, progress=False, callback=kill)
    resumed, _ = train_mapper(ex, _cfg(), tmp_path / "cut", train_cfg=tc, progress=False)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_fine_tune_with_init_and_extra_speakers(tmp_path):
    ex = _synthetic(n_spk=3, per=2)
    tc = TrainConfig(lr=3e-3, batch_size=3, max_epochs=1)
    train_mapper(ex, _cfg(), tmp_path / "base", train_cfg=tc, progress=False)
    extra = [dataclasses.replace(e, speaker="extra_tts") for e in _synthetic(1, 2, seed=3)]
    _, rep = train_mapper(ex + extra, _cfg(), tmp_path / "ft", train_cfg=tc, progress=False,
                          init=tmp_path / "base", train_only_speakers={"extra_tts"})
    assert "extra_tts" in rep["train_speakers"] and "extra_tts" not in rep["val_speakers"]
    with pytest.raises(ConfigError, match="structure"):
        train_mapper(ex, _cfg(hidden=48), tmp_path / "bad", train_cfg=tc, progress=False,
                     init=tmp_path / "base")


@dataclasses.dataclass(frozen=True)
class _EncCfg:
    model: str = "standin"
    layers: tuple = (5,)
    frame_rate: float = 50.0


class _StandInEncoder:
    """Test-only stand-in with encoders.Encoder's contract: encode(wav) -> (L, T, D) at 50 Hz."""

    config = _EncCfg()

    def __init__(self):
        self.calls = 0

    def encode(self, wav):
        self.calls += 1
        t = len(wav) // 320
        return np.tile(np.linspace(-1, 1, t, dtype=np.float32)[None, :, None], (1, 1, 8))


@dataclasses.dataclass(frozen=True)
class _Utt:
    utt_id: str
    path: Path
    speaker: str


def test_prepare_examples_aligns_and_caches(tmp_path):
    sr = 16000
    t = np.arange(int(1.3 * sr)) / sr
    # A harmonic-rich 140 Hz tone (voice-like; pitch trackers distrust a pure sine).
    harmonics = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 20))
    wav = 0.2 * harmonics * ((t > 0.2) & (t < 1.1))  # silence around it, like an utterance
    save_audio(tmp_path / "a.wav", wav.astype(np.float32), sr)
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    utts = [_Utt("a", tmp_path / "a.wav", "s1"), _Utt("bad", tmp_path / "bad.wav", "s1")]
    enc = _StandInEncoder()
    ex = prepare_examples(utts, enc, 5, HIFIGAN_22K, tmp_path / "cache", progress=False)
    assert [e.utt_id for e in ex] == ["a"]  # the unreadable file is reported and skipped
    e = ex[0]
    assert e.frames.shape == (65, 8) and e.prosody.shape == (3, 65)
    assert e.mel.shape == (80, out_frames(65, 50.0, HIFIGAN_22K.frame_rate))
    assert np.isfinite(e.prosody).all() and e.prosody[1].mean() > 0.4  # voiced in the middle
    voiced = e.prosody[1] > 0.99
    assert np.allclose(e.prosody[0][voiced], np.log2(140 / 100), atol=0.05)  # log2(F0 / 100 Hz)
    again = prepare_examples(utts[:1], enc, 5, HIFIGAN_22K, tmp_path / "cache", progress=False)
    assert enc.calls == 1 and np.array_equal(again[0].mel, e.mel)
    with pytest.raises(ConfigError, match="layer 3"):
        prepare_examples(utts, enc, 3, HIFIGAN_22K, tmp_path / "cache", progress=False)
    mapper = Mapper(MapperConfig.for_mel(HIFIGAN_22K, in_dim=8, **TINY))
    assert np.isfinite(evaluate_mcd(mapper, ex))


def _voice(f0, seconds=1.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    return (0.2 * tone * ((t > 0.1) & (t < seconds - 0.1))).astype(np.float32)


def _corpus(root: Path, n_spk=4, per=2) -> Path:
    rows = ["path,speaker,emotion"]
    for s in range(n_spk):
        for u in range(per):
            name = f"s{s}_u{u}.wav"
            save_audio(root / name, _voice(100 + 20 * s + 7 * u), 16000)
            rows.append(f"{name},spk{s},{('calm', 'angry')[u % 2]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_cli_train_mapper_end_to_end(tmp_path, tiny_model_dir, capsys):
    from emosteer.cli import main

    manifest = _corpus(tmp_path / "corpus")
    out = tmp_path / "mapper"
    argv = ["train-mapper", str(manifest), "--format", "csv", "--model", str(tiny_model_dir),
            "--layer", "2", "--out", str(out), "--test-speakers", "spk3", "--val-speakers",
            "spk2", "--mel", "ssl16k", "--epochs", "2", "--hidden", "16", "--blocks", "1",
            "--no-progress"]
    assert main(argv) == 0
    assert "test MCD" in capsys.readouterr().out
    m = load_mapper(out)
    assert m.config.layer == 2 and m.config.in_dim == 32 and m.config.mel.sample_rate == 16000
    rep = json.loads((out / "train_report.json").read_text())
    assert rep["val_speakers"] == ["spk2"] and rep["test_speakers"] == ["spk3"]
    assert rep["train_speakers"] == ["spk0", "spk1"] and rep["result"]["epochs"] == 2
    assert main(argv) == 2  # refuses to overwrite a finished mapper
    assert "already exists" in capsys.readouterr().err
    # Fine-tune on unlabelled extra audio only, starting from the mapper above.
    extra = tmp_path / "tts"
    for i in range(2):
        save_audio(extra / f"x{i}.wav", _voice(180 + 10 * i), 16000)
    assert main(["train-mapper", "--model", str(tiny_model_dir), "--layer", "2", "--out",
                 str(tmp_path / "ft"), "--extra-audio", str(extra), "--init", str(out),
                 "--mel", "ssl16k", "--epochs", "1", "--no-progress"]) == 0
    assert json.loads((tmp_path / "ft" / "train_report.json").read_text())["train_speakers"] == [
        "extra_tts"]


def test_cli_train_mapper_rejects_bad_arguments(tmp_path, tiny_model_dir, capsys):
    from emosteer.cli import main

    manifest = _corpus(tmp_path / "corpus", n_spk=2, per=1)
    base = ["train-mapper", "--model", str(tiny_model_dir), "--layer", "2", "--out",
            str(tmp_path / "o"), "--no-progress"]
    assert main(base) == 2
    assert "give a corpus" in capsys.readouterr().err
    assert main(base + [str(manifest), "--format", "csv", "--speakers", "spk9"]) == 2
    assert "no speaker 'spk9'" in capsys.readouterr().err
    assert main(base + [str(manifest), "--format", "csv", "--speakers", "spk0",
                        "--test-speakers", "spk0"]) == 2
    assert "overlap" in capsys.readouterr().err


def test_mean_mel_baseline():
    rng = np.random.default_rng(0)

    def ex(mel):
        return MapperExample("u", "s", np.zeros((4, 8), np.float32), np.zeros((3, 4), np.float32),
                             mel.astype(np.float32))

    flat = np.tile(rng.normal(size=(80, 1)), (1, 20))
    assert mean_mel_mcd([ex(flat)], [ex(flat)]) == pytest.approx(0.0, abs=1e-4)  # float32 mels
    varied = flat + rng.normal(size=flat.shape)
    assert mean_mel_mcd([ex(flat)], [ex(varied)]) > 1.0
    assert np.isnan(mean_mel_mcd([], [ex(flat)]))
