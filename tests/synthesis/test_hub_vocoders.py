"""Hub vocoders (SpeechT5 HiFi-GAN, Vocos) from tiny random checkpoints saved to a temp dir and
reloaded through load_vocoder, their mel definitions against independent references, the
offline error, and `train-mapper --vocoder DIR`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emosteer.artifacts import config_from_dict, jsonable
from emosteer.audio import save_audio
from emosteer.errors import ArtifactError, ConfigError, EmosteerError
from emosteer.steering.steer import Steerer
from emosteer.synthesis.contract import Vocoder
from emosteer.synthesis.hub_vocoders import (
    HubVocoder,
    SpeechT5Vocoder,
    Vocos,
    is_hub_vocoder,
    vocos_config,
)
from emosteer.synthesis.mapper import load_mapper
from emosteer.synthesis.mel import (
    HIFIGAN_22K,
    SPEECHT5_16K,
    VOCOS_24K,
    MelConfig,
    log_mel_spectrogram,
    mel_basis,
    mel_to_magnitude,
    n_frames,
)
from emosteer.synthesis.vocoders import describe_vocoder, load_vocoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1_0"


def _signal(sr: int, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    """A harmonic tone plus noise after a stretch of exact silence (the log floor)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 6)) * 0.2
    x = x + 0.02 * rng.standard_normal(t.size)
    x[: sr // 20] = 0.0
    return x.astype(np.float32)


# --- mel definitions --------------------------------------------------------------------------

def test_new_mel_fields_default_to_jik876_and_old_json_loads():
    assert (HIFIGAN_22K.log, HIFIGAN_22K.mel_scale, HIFIGAN_22K.mel_norm) == ("ln", "slaney",
                                                                              "slaney")
    assert HIFIGAN_22K.stft_eps == 1e-9 and not HIFIGAN_22K.center
    old = {k: v for k, v in jsonable(HIFIGAN_22K).items()
           if k not in ("log", "mel_scale", "mel_norm", "stft_eps")}
    assert config_from_dict(MelConfig, old) == HIFIGAN_22K
    assert load_mapper(FIXTURES / "mapper").config.mel == HIFIGAN_22K  # a 0.1.0 mapper.json
    for cfg in (SPEECHT5_16K, VOCOS_24K):
        assert config_from_dict(MelConfig, json.loads(json.dumps(jsonable(cfg)))) == cfg
    for bad in ({"log": "log2"}, {"mel_scale": "kaldi"}, {"mel_norm": "peak"},
                {"stft_eps": -1.0}):
        with pytest.raises(ConfigError):
            MelConfig(**bad)


def test_speecht5_mel_matches_the_transformers_feature_extractor():
    from transformers import SpeechT5FeatureExtractor

    x = _signal(16000)
    ref = SpeechT5FeatureExtractor()._extract_mel_features(x).T  # raw log10 mel (80, frames)
    ours = log_mel_spectrogram(x, SPEECHT5_16K)
    assert ours.shape == ref.shape == (80, n_frames(x.size, SPEECHT5_16K))
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert ref.min() == pytest.approx(SPEECHT5_16K.log_floor)  # the silence hits mel_floor


def _htk_filterbank(sr: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk"), (n_freqs, n_mels)."""
    all_freqs = torch.linspace(0, sr // 2, n_fft // 2 + 1, dtype=torch.float64)
    m_max = 2595.0 * math.log10(1.0 + (sr / 2) / 700.0)
    m_pts = torch.linspace(0.0, m_max, n_mels + 2, dtype=torch.float64)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down, up = -slopes[:, :-2] / f_diff[:-1], slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


def _ref_vocos_mel(wav: np.ndarray, sr=24000, n_fft=1024, hop=256, n_mels=100) -> np.ndarray:
    """Vocos' MelSpectrogramFeatures(padding="center"): torchaudio MelSpectrogram(power=1) is
    |torch.stft(center=True, reflect)| times the htk filterbank; then ln(clip(., 1e-7))."""
    spec = torch.stft(torch.from_numpy(wav), n_fft, hop, window=torch.hann_window(n_fft),
                      center=True, pad_mode="reflect", return_complex=True).abs()
    mel = (spec.T @ _htk_filterbank(sr, n_fft, n_mels)).T
    return torch.log(torch.clip(mel, min=1e-7)).numpy()


def test_vocos_mel_matches_a_torchaudio_style_reference():
    x = _signal(24000)
    ours = log_mel_spectrogram(x, VOCOS_24K)
    ref = _ref_vocos_mel(x)
    assert ours.shape == ref.shape == (100, x.size // 256 + 1)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    np.testing.assert_allclose(mel_basis(VOCOS_24K), _htk_filterbank(24000, 1024, 100).T.numpy(),
                               atol=1e-6)


def test_log10_mels_invert_in_their_own_base():
    x = _signal(16000)
    lm = log_mel_spectrogram(x, SPEECHT5_16K)
    mag = mel_to_magnitude(lm, SPEECHT5_16K)
    rebuilt = np.log10(np.maximum(mel_basis(SPEECHT5_16K) @ mag, SPEECHT5_16K.clamp))
    loud = lm > -3
    assert np.median(np.abs(rebuilt - lm)[loud]) < 0.05


# --- SpeechT5 HiFi-GAN --------------------------------------------------------------------------

def _tiny_speecht5(path: Path) -> torch.nn.Module:
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    cfg = SpeechT5HifiGanConfig(model_in_dim=80, sampling_rate=16000, upsample_initial_channel=16,
                                upsample_rates=[4, 4, 4, 4], upsample_kernel_sizes=[8, 8, 8, 8],
                                resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]],
                                normalize_before=True)
    torch.manual_seed(0)
    model = SpeechT5HifiGan(cfg).eval()
    with torch.no_grad():  # a real normalisation, so that skipping or doubling it would show
        model.mean.copy_(torch.linspace(-6, -3, 80))
        model.scale.copy_(torch.linspace(1, 2, 80))
    model.save_pretrained(path)
    return model


def test_speecht5_directory_loads_through_load_vocoder(tmp_path):
    ref = _tiny_speecht5(tmp_path / "t5")
    assert is_hub_vocoder(tmp_path / "t5")
    vocoder = load_vocoder(tmp_path / "t5")
    assert isinstance(vocoder, SpeechT5Vocoder)
    assert vocoder.mel_config == SPEECHT5_16K and vocoder.sample_rate == 16000
    mel = torch.randn(2, 80, 7) - 5
    with torch.inference_mode():
        wav = vocoder(mel)
        expected = ref(mel.transpose(1, 2))
    assert wav.shape == (2, 7 * 256) and wav.dtype == torch.float32
    torch.testing.assert_close(wav, expected)
    assert vocoder.vocode(mel[0].numpy()).shape == (7 * 256,)
    info = describe_vocoder(vocoder)
    assert info["class"] == "SpeechT5Vocoder" and info["hop_length"] == 256
    assert info["mel"]["log"] == "log10"
    assert load_vocoder(tmp_path / "t5", mel_config=SPEECHT5_16K).mel_config == SPEECHT5_16K
    with pytest.raises(ConfigError, match="expects mels"):
        load_vocoder(tmp_path / "t5", mel_config=HIFIGAN_22K)
    with pytest.raises(ConfigError, match="mel bands"):
        vocoder(torch.zeros(1, 100, 3))


def test_speecht5_with_a_missing_weight_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    _tiny_speecht5(tmp_path / "t5")
    weights = tmp_path / "t5" / "model.safetensors"
    state = load_file(str(weights))
    del state["conv_post.weight"]
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(ArtifactError, match="conv_post.weight"):
        load_vocoder(tmp_path / "t5")


# --- Vocos ----------------------------------------------------------------------------------------

def _vocos_yaml(padding="center", sr=24000, n_mels=100, dim=16, inter=32, layers=2,
                fe_class="vocos.feature_extractors.MelSpectrogramFeatures", extra_fe="") -> str:
    return f"""\
feature_extractor:
  class_path: {fe_class}
  init_args:
    sample_rate: {sr}
    n_fft: 1024
    hop_length: 256
    n_mels: {n_mels}
    padding: {padding}
{extra_fe}
backbone:
  class_path: vocos.models.VocosBackbone
  init_args:
    input_channels: {n_mels}
    dim: {dim}
    intermediate_dim: {inter}
    num_layers: {layers}

head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: {dim}
    n_fft: 1024
    hop_length: 256
    padding: {padding}
"""


def _upstream_keys(layers: int) -> set[str]:
    """The state dict keys of upstream's Vocos(MelSpectrogramFeatures, VocosBackbone, ISTFTHead)."""
    block = ("dwconv.weight", "dwconv.bias", "norm.weight", "norm.bias", "pwconv1.weight",
             "pwconv1.bias", "pwconv2.weight", "pwconv2.bias", "gamma")
    return {"feature_extractor.mel_spec.spectrogram.window",
            "feature_extractor.mel_spec.mel_scale.fb",
            "backbone.embed.weight", "backbone.embed.bias", "backbone.norm.weight",
            "backbone.norm.bias", "backbone.final_layer_norm.weight",
            "backbone.final_layer_norm.bias", "head.out.weight", "head.out.bias",
            "head.istft.window",
            *(f"backbone.convnext.{i}.{k}" for i in range(layers) for k in block)}


def _tiny_vocos(path: Path, padding="center", **kw) -> dict[str, torch.Tensor]:
    """config.yaml + pytorch_model.bin of a random tiny Vocos, its filterbank computed by the
    torchaudio-style reference (not by emosteer)."""
    path.mkdir(parents=True, exist_ok=True)
    text = _vocos_yaml(padding, **kw)
    (path / "config.yaml").write_text(text)
    import yaml

    mel, backbone, head = vocos_config(yaml.safe_load(text), "test")
    torch.manual_seed(1)
    state = {k: v.clone() for k, v in Vocos(mel, backbone, head).state_dict().items()}
    with torch.no_grad():
        for k, v in state.items():
            if k.startswith(("backbone", "head.out")) and not k.endswith("window"):
                v.copy_(torch.randn_like(v) * 0.1)
    state["feature_extractor.mel_spec.mel_scale.fb"] = _htk_filterbank(
        mel.sample_rate, mel.n_fft, mel.n_mels)
    torch.save(state, path / "pytorch_model.bin")
    return state


def _ref_vocos_decode(state, mel: torch.Tensor, layers: int, padding: str) -> torch.Tensor:
    """Upstream Vocos.decode written out with functional ops on the state dict."""
    s = state
    dim = s["backbone.embed.weight"].shape[0]
    x = F.conv1d(mel, s["backbone.embed.weight"], s["backbone.embed.bias"], padding=3)
    x = F.layer_norm(x.transpose(1, 2), (dim,), s["backbone.norm.weight"],
                     s["backbone.norm.bias"], eps=1e-6).transpose(1, 2)
    for i in range(layers):
        p = f"backbone.convnext.{i}."
        h = F.conv1d(x, s[p + "dwconv.weight"], s[p + "dwconv.bias"], padding=3, groups=dim)
        h = F.layer_norm(h.transpose(1, 2), (dim,), s[p + "norm.weight"], s[p + "norm.bias"],
                         eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, s[p + "pwconv1.weight"], s[p + "pwconv1.bias"])),
                     s[p + "pwconv2.weight"], s[p + "pwconv2.bias"])
        x = x + (s[p + "gamma"] * h).transpose(1, 2)
    x = F.layer_norm(x.transpose(1, 2), (dim,), s["backbone.final_layer_norm.weight"],
                     s["backbone.final_layer_norm.bias"], eps=1e-6)
    out = F.linear(x, s["head.out.weight"], s["head.out.bias"]).transpose(1, 2)
    mag, ph = out.chunk(2, dim=1)
    spec = torch.clip(torch.exp(mag), max=1e2) * torch.exp(1j * torch.atan2(torch.sin(ph),
                                                                            torch.cos(ph)))
    window = s["head.istft.window"]
    if padding == "center":
        return torch.istft(spec, 1024, 256, 1024, window, center=True)  # (T - 1) * hop samples
    t, pad = spec.shape[-1], (1024 - 256) // 2
    frames = torch.fft.irfft(spec, 1024, dim=1) * window[None, :, None]
    size = (t - 1) * 256 + 1024
    y = F.fold(frames, (1, size), (1, 1024), stride=(1, 256))[:, 0, 0, pad:-pad]
    env = F.fold(window.square().expand(1, t, -1).transpose(1, 2), (1, size), (1, 1024),
                 stride=(1, 256)).squeeze()[pad:-pad]
    return y / env


@pytest.mark.parametrize("padding", ["center", "same"])
def test_vocos_directory_loads_strictly_and_decodes_like_upstream(tmp_path, padding):
    state = _tiny_vocos(tmp_path / "vocos", padding)
    assert set(state) == _upstream_keys(2)
    assert is_hub_vocoder(tmp_path / "vocos")
    vocoder = load_vocoder(str(tmp_path / "vocos"))
    assert isinstance(vocoder, Vocos)
    expected_mel = VOCOS_24K if padding == "center" else VOCOS_24K.replace(center=False)
    assert vocoder.mel_config == expected_mel
    mel = torch.from_numpy(log_mel_spectrogram(_signal(24000, 0.3), expected_mel))[None]
    with torch.inference_mode():
        wav = vocoder(mel)
        ref = _ref_vocos_decode(state, mel, 2, padding)
    t = mel.shape[-1]
    assert wav.shape == (1, t * 256) and wav.dtype == torch.float32
    # upstream's "center" ISTFT stops one hop short; the samples it has are ours
    torch.testing.assert_close(wav[:, :ref.shape[-1]], ref, atol=1e-5, rtol=1e-4)
    assert ref.shape[-1] == (t - 1 if padding == "center" else t) * 256
    assert describe_vocoder(vocoder)["mel"]["mel_scale"] == "htk"


def test_vocos_refuses_what_it_cannot_load_exactly(tmp_path):
    state = _tiny_vocos(tmp_path / "v")
    weights = tmp_path / "v" / "pytorch_model.bin"
    torch.save({**state, "backbone.extra": torch.zeros(1)}, weights)
    with pytest.raises(ArtifactError, match="backbone.extra"):
        load_vocoder(tmp_path / "v")
    torch.save({k: v for k, v in state.items() if k != "head.out.bias"}, weights)
    with pytest.raises(ArtifactError, match="head.out.bias"):
        load_vocoder(tmp_path / "v")
    torch.save({**state, "feature_extractor.mel_spec.mel_scale.fb": torch.from_numpy(
        mel_basis(VOCOS_24K.replace(mel_scale="slaney", mel_norm="slaney")).T.copy())}, weights)
    with pytest.raises(ArtifactError, match="filterbank"):
        load_vocoder(tmp_path / "v")
    torch.save({"state": state, "hparams": {"lr": object}}, weights)  # a pickle with code in it
    with pytest.raises(ArtifactError, match="refused"):
        load_vocoder(tmp_path / "v")
    (tmp_path / "v" / "config.yaml").write_text(
        _vocos_yaml(fe_class="vocos.feature_extractors.EncodecFeatures"))
    with pytest.raises(ConfigError, match="mel variant"):
        load_vocoder(tmp_path / "v")
    (tmp_path / "v" / "config.yaml").write_text(_vocos_yaml(extra_fe="    win_length: 512\n"))
    with pytest.raises(ArtifactError, match="win_length"):
        load_vocoder(tmp_path / "v")


def test_vocos_config_may_name_the_filterbank():
    import yaml

    extra = "    f_min: 0\n    f_max: 8000\n    norm: slaney\n    mel_scale: slaney\n"
    mel, _, _ = vocos_config(yaml.safe_load(_vocos_yaml("same", 22050, 80, extra_fe=extra)), "t")
    assert (mel.fmax, mel.mel_norm, mel.mel_scale, mel.center) == (8000.0, "slaney", "slaney",
                                                                   False)


def test_hub_vocoders_keep_the_vocoder_contract():
    public = {n for n in vars(Vocoder) if not n.startswith("__")}
    assert public <= set(dir(HubVocoder))


# --- hub ids --------------------------------------------------------------------------------------

@pytest.mark.parametrize("repo_id", ["microsoft/speecht5_hifigan", "charactr/vocos-mel-24khz",
                                     "someone/some-vocoder"])
def test_hub_id_without_the_hub_says_so(tmp_path, monkeypatch, repo_id):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert is_hub_vocoder(repo_id)
    with pytest.raises(ArtifactError) as e:
        load_vocoder(repo_id)
    msg = str(e.value)
    assert msg.startswith(repo_id) and "could not be fetched" in msg and "local directory" in msg


def test_names_that_are_not_hub_vocoders(tmp_path):
    assert not is_hub_vocoder("griffinlim") and not is_hub_vocoder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "wav2vec2"}')
    assert not is_hub_vocoder(tmp_path)
    with pytest.raises(ArtifactError, match="no generator checkpoint"):  # still a jik876 dir
        load_vocoder(tmp_path)


# --- train-mapper --vocoder -----------------------------------------------------------------------

def _corpus(root: Path) -> Path:
    rows = ["path,speaker,emotion"]
    for s in range(2):
        for u in range(2):
            t = np.arange(9600) / 16000
            wav = (0.2 * np.sin(2 * np.pi * (120 + 30 * s + 9 * u) * t)).astype(np.float32)
            save_audio(root / f"s{s}_u{u}.wav", wav, 16000)
            rows.append(f"s{s}_u{u}.wav,spk{s},{('calm', 'angry')[u]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_train_mapper_targets_the_vocoders_mels(tmp_path, tiny_model_dir, capsys):
    from emosteer.cli import main

    _tiny_speecht5(tmp_path / "t5")
    manifest = _corpus(tmp_path / "corpus")
    base = ["train-mapper", str(manifest), "--format", "csv", "--model", str(tiny_model_dir),
            "--layer", "2", "--epochs", "1", "--hidden", "16", "--blocks", "1", "--no-progress",
            "--vocoder", str(tmp_path / "t5")]
    assert main(base + ["--out", str(tmp_path / "m")]) == 0
    saved = json.loads((tmp_path / "m" / "mapper.json").read_text())["mel"]
    assert config_from_dict(MelConfig, saved) == SPEECHT5_16K
    assert load_mapper(tmp_path / "m").config.mel == load_vocoder(tmp_path / "t5").mel_config
    # the mapper remembers its vocoder, so the default "auto" finds it again when steering
    assert load_mapper(tmp_path / "m").config.vocoder == str(tmp_path / "t5")
    st = Steerer.from_artifacts(mapper=tmp_path / "m", model=str(tiny_model_dir))
    assert isinstance(st.vocoder, SpeechT5Vocoder) and st.vocoder.name == str(tmp_path / "t5")
    assert main(base + ["--out", str(tmp_path / "m2"), "--mel", "ssl16k"]) == 2
    assert "--mel ssl16k" in capsys.readouterr().err
    with pytest.raises(EmosteerError):
        load_mapper(tmp_path / "m2")
