"""HiFi-GAN against a transcription of jik876's own Generator (weight_norm and all): its
checkpoints load strictly and give the same output; unsafe or broken checkpoints are refused."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emosteer.errors import ArtifactError
from emosteer.synthesis.hifigan import V1, V3, fold_weight_norm, split_weight_norm
from emosteer.synthesis.mel import HIFIGAN_22K
from emosteer.synthesis.vocoders import HiFiGAN, load_vocoder

# ---- jik876/hifi-gan models.py, transcribed with its weight_norm, for an independent check ----


def _wn(module):
    with warnings.catch_warnings():  # the old API is deprecated but is what wrote the checkpoints
        warnings.simplefilter("ignore")
        return torch.nn.utils.weight_norm(module)


def _pad(k, d=1):
    return int((k * d - d) / 2)


class _RefResBlock1(nn.Module):
    def __init__(self, ch, k, d):
        super().__init__()
        self.convs1 = nn.ModuleList([_wn(nn.Conv1d(ch, ch, k, 1, dilation=x, padding=_pad(k, x)))
                                     for x in d])
        self.convs2 = nn.ModuleList([_wn(nn.Conv1d(ch, ch, k, 1, dilation=1, padding=_pad(k, 1)))
                                     for _ in d])

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = F.leaky_relu(x, 0.1)
            xt = c1(xt)
            xt = F.leaky_relu(xt, 0.1)
            xt = c2(xt)
            x = xt + x
        return x


class _RefResBlock2(nn.Module):
    def __init__(self, ch, k, d):
        super().__init__()
        self.convs = nn.ModuleList([_wn(nn.Conv1d(ch, ch, k, 1, dilation=x, padding=_pad(k, x)))
                                    for x in d])

    def forward(self, x):
        for c in self.convs:
            x = c(F.leaky_relu(x, 0.1)) + x
        return x


class _RefGenerator(nn.Module):
    def __init__(self, h: dict):
        super().__init__()
        self.num_kernels = len(h["resblock_kernel_sizes"])
        self.num_upsamples = len(h["upsample_rates"])
        c0 = h["upsample_initial_channel"]
        self.conv_pre = _wn(nn.Conv1d(80, c0, 7, 1, padding=3))
        block = _RefResBlock1 if h["resblock"] == "1" else _RefResBlock2
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"], strict=True)):
            self.ups.append(_wn(nn.ConvTranspose1d(c0 // (2**i), c0 // (2 ** (i + 1)), k, u,
                                                   padding=(k - u) // 2)))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = c0 // (2 ** (i + 1))
            for k, d in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"], strict=True):
                self.resblocks.append(block(ch, k, d))
        self.conv_post = _wn(nn.Conv1d(ch, 1, 7, 1, padding=3))

    def forward(self, x):
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            x = F.leaky_relu(x, 0.1)
            x = self.ups[i](x)
            xs = None
            for j in range(self.num_kernels):
                r = self.resblocks[i * self.num_kernels + j](x)
                xs = r if xs is None else xs + r
            x = xs / self.num_kernels
        x = F.leaky_relu(x)
        return torch.tanh(self.conv_post(x))


def _jik876_config(version: dict) -> dict:
    """A config.json as jik876 ships it, training keys included."""
    h = {"resblock": "1", "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002,
         "adam_b1": 0.8, "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234,
         "upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4],
         "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
         "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "segment_size": 8192,
         "num_mels": 80, "num_freq": 1025, "n_fft": 1024, "hop_size": 256, "win_size": 1024,
         "sampling_rate": 22050, "fmin": 0, "fmax": 8000, "fmax_for_loss": None,
         "num_workers": 4}
    h.update(version)
    return h


V3_JSON = {"resblock": "2", "upsample_rates": [8, 8, 4], "upsample_kernel_sizes": [16, 16, 8],
           "upsample_initial_channel": 256, "resblock_kernel_sizes": [3, 5, 7],
           "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]]}


def _write_jik876(directory: Path, h: dict, seed: int = 0, step: int = 1,
                  legacy: bool = False) -> _RefGenerator:
    """`legacy`: the pre-1.6 (non-zip) format that torch 1.4, jik876's version, wrote."""
    torch.manual_seed(seed)
    ref = _RefGenerator(h).eval()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(h))
    torch.save({"generator": ref.state_dict()}, directory / f"g_{step:08d}",
               _use_new_zipfile_serialization=not legacy)
    return ref


@pytest.fixture(scope="module")
def jik876_v1(tmp_path_factory):
    d = tmp_path_factory.mktemp("jik876_v1")
    return d, _write_jik876(d, _jik876_config({}))


def test_jik876_v1_checkpoint_loads_strictly_with_identical_output(jik876_v1):
    directory, ref = jik876_v1
    assert any(k.endswith("weight_g") for k in ref.state_dict())  # really the on-disk layout
    voc = load_vocoder(directory)
    assert isinstance(voc, HiFiGAN) and voc.hifigan_config == V1 and not voc.training
    assert voc.mel_config == HIFIGAN_22K and voc.sample_rate == 22050 and voc.hop_length == 256
    assert not any("weight_g" in k for k in voc.state_dict())  # weight norm folded away
    mel = torch.randn(2, 80, 7) - 4
    with torch.no_grad():
        expected = ref(mel)[:, 0]
        got = voc(mel)
    assert got.shape == (2, 7 * 256)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert load_vocoder(directory / "g_00000001").hifigan_config == V1  # a g_ file works too


def test_jik876_v3_legacy_format_and_newest_step_is_chosen(tmp_path):
    _write_jik876(tmp_path, _jik876_config(V3_JSON), seed=1, step=5)
    ref = _write_jik876(tmp_path, _jik876_config(V3_JSON), seed=2, step=10, legacy=True)
    voc = load_vocoder(tmp_path)
    assert voc.hifigan_config == V3
    mel = torch.randn(1, 80, 5) - 4
    with torch.no_grad():
        torch.testing.assert_close(voc(mel), ref(mel)[:, 0], atol=1e-5, rtol=1e-4)


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    d = tmp_path / "evil"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(_jik876_config({})))
    torch.save({"generator": Payload()}, d / "g_00000001")
    with pytest.raises(ArtifactError, match="g_00000001.*refused"):
        load_vocoder(d)
    assert not marker.exists()
    # The payload is live: an unrestricted unpickle would have run it.
    torch.load(d / "g_00000001", weights_only=False)
    assert marker.exists()


def test_bad_checkpoints_are_artifact_errors(tmp_path, jik876_v1):
    src, _ = jik876_v1
    wrong = tmp_path / "wrong_config"
    wrong.mkdir()
    (wrong / "g_00000001").write_bytes((src / "g_00000001").read_bytes())
    (wrong / "config.json").write_text(json.dumps(_jik876_config({"upsample_initial_channel": 128})))
    with pytest.raises(ArtifactError, match="shape"):
        load_vocoder(wrong)
    (wrong / "config.json").write_text(json.dumps(_jik876_config({"hop_size": 320})))
    with pytest.raises(ArtifactError, match="config.json.*hop"):
        load_vocoder(wrong)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text(json.dumps(_jik876_config({})))
    (truncated / "g_00000001").write_bytes((src / "g_00000001").read_bytes()[:5000])
    with pytest.raises(ArtifactError, match="g_00000001"):
        load_vocoder(truncated)
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    torch.save({"generator": {}}, no_config / "g_00000001")
    with pytest.raises(ArtifactError, match="config.json"):
        load_vocoder(no_config)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ArtifactError, match="no generator checkpoint"):
        load_vocoder(tmp_path / "empty_dir")
    with pytest.raises(ArtifactError, match="no such vocoder"):
        load_vocoder("hifigan-does-not-exist")



def test_split_then_fold_weight_norm_is_identity():
    torch.manual_seed(5)
    state = HiFiGAN(V3).state_dict()
    split = split_weight_norm(state)
    assert "conv_pre.weight_g" in split and "conv_pre.weight" not in split
    back = fold_weight_norm(split)
    assert set(back) == set(state)
    for k in state:
        torch.testing.assert_close(back[k], state[k])
    with pytest.raises(ArtifactError, match="weight_v"):
        fold_weight_norm({"conv_pre.weight_g": split["conv_pre.weight_g"]})
