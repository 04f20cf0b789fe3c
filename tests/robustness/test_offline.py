"""Offline: with no network, a hub lookup used to retry for ~27 s before failing. One short probe
(or HF_HUB_OFFLINE) now decides, within 2 s load_encoder either fails with a message that says
why or, for a random-init control of a known architecture, builds it without a download, and
`train-mapper --random-init` agrees with the demo's fallback about what that model is."""

from __future__ import annotations

import socket
import time

import pytest

# Imported up front (several seconds on a shared CPU): the 2 s budget is for lookups, not imports.
from transformers import AutoConfig, Wav2Vec2Model  # noqa: F401

from emosteer.cli import main
from emosteer.embeddings import hub
from emosteer.embeddings.encoders import load_encoder
from emosteer.embeddings.fallback import load_encoder_or_control
from emosteer.errors import ConfigError
from signals import tone_corpus

BUDGET_S = 2.0
TINY = "org/tiny-w2v2"  # a "standard checkpoint" of the tiny test architecture, never downloaded
TINY_ARCH = ("Wav2Vec2Config", dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                    intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                                    conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                                    num_conv_pos_embedding_groups=2), True)


@pytest.fixture()
def no_network(monkeypatch):
    """Every name lookup and connect fails, as on a machine without a network."""
    calls = []

    def unreachable(*args, **kwargs):
        calls.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setitem(hub.KNOWN_ARCHITECTURES, TINY, TINY_ARCH)
    hub._probe.cache_clear()
    yield calls
    hub._probe.cache_clear()


def test_an_uncached_hub_id_fails_fast_and_says_why(no_network):
    start = time.monotonic()
    with pytest.raises(ConfigError, match="hub is not reachable") as info:
        load_encoder("org/never-cached-model", layers=[1])
    assert time.monotonic() - start < BUDGET_S
    assert "local checkpoint directory" in str(info.value)


def test_the_probe_is_asked_once_per_process(no_network):
    assert not hub.hub_reachable() and not hub.hub_reachable()
    assert len(no_network) == 1


def test_hf_hub_offline_needs_no_probe(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="hub is not reachable"):
        load_encoder("org/never-cached-model", layers=[1])
    assert time.monotonic() - start < BUDGET_S and no_network == []


def test_a_hanging_name_lookup_is_cut_short(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    def hanging(*args, **kwargs):  # a resolver that answers long after the probe gave up
        time.sleep(30)
        raise OSError("name lookup timed out")

    monkeypatch.setattr(socket, "create_connection", hanging)
    hub._probe.cache_clear()
    try:
        start = time.monotonic()
        assert not hub.hub_reachable()
        assert time.monotonic() - start < hub.HUB_PROBE_TIMEOUT_S + 0.5
    finally:
        hub._probe.cache_clear()


def test_random_init_of_a_known_architecture_needs_no_download(no_network, tmp_path):
    start = time.monotonic()
    enc = load_encoder(TINY, layers=[2], random_init=True, seed=3)
    assert time.monotonic() - start < BUDGET_S
    assert enc.config.random_init and enc.config.model == TINY and enc.config.hidden_size == 32
    # the demo's fallback path and a plain random-init load are the same model
    control, note = load_encoder_or_control(TINY, (2,), tmp_path / "ctl", random_init=True, seed=3)
    assert note == "" and control.identity.weights_hash == enc.identity.weights_hash
    stand_in, note = load_encoder_or_control(TINY, (2,), tmp_path / "ctl2", seed=3)
    assert "RANDOM-INIT" in note and stand_in.identity.weights_hash == enc.identity.weights_hash


def test_train_mapper_random_init_works_offline(no_network, tmp_path, capsys):
    manifest = tone_corpus(tmp_path, n=4, n_speakers=2)
    rc = main(["train-mapper", str(manifest), "--format", "csv", "--model", TINY, "--random-init",
               "--layer", "2", "--out", str(tmp_path / "mapper"), "--mel", "ssl16k",
               "--hidden", "8", "--blocks", "1", "--epochs", "1", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "mapper" / "mapper.json").is_file()
