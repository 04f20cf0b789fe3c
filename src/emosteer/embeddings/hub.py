"""The Hugging Face hub, offline: whether it can be reached (decided in about a second, once per
process), and the architectures of the standard checkpoints, known without a download.

Without a network, transformers retries every hub lookup for about 27 s before it fails. One
short TCP probe (or HF_HUB_OFFLINE) decides instead; `load_encoder` then reads only the local
cache, and a random-init control of a known checkpoint is built from its architecture alone
(transformers' default configs *are* the base models' architectures), so it needs no download
at all. `emosteer.embeddings.fallback` uses the same table for the demo's labelled stand-in.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from urllib.parse import urlparse

HUB_ENDPOINT = "https://huggingface.co"
# One TCP connect, and the name lookup before it: a reachable hub answers well within a second;
# an unreachable one must not cost more than that before the caller falls back or says why.
HUB_PROBE_TIMEOUT_S = 1.0
_TRUE = ("1", "true", "yes", "on")

# hub id -> (transformers config class whose defaults are that checkpoint's architecture,
# config overrides, whether its feature extractor normalises each utterance: the published
# preprocessor configs normalise for the wav2vec2/data2vec models, not for HuBERT/WavLM base)
KNOWN_ARCHITECTURES: dict[str, tuple[str, dict, bool]] = {
    "facebook/wav2vec2-base": ("Wav2Vec2Config", {}, True),
    "facebook/wav2vec2-base-960h": ("Wav2Vec2Config", {}, True),
    "facebook/hubert-base-ls960": ("HubertConfig", {}, False),
    "microsoft/wavlm-base": ("WavLMConfig", {}, False),
    "microsoft/wavlm-base-plus": ("WavLMConfig", {}, False),
    "facebook/data2vec-audio-base": ("Data2VecAudioConfig", {}, True),
}


def offline_by_env() -> bool:
    """HF_HUB_OFFLINE (or transformers' older TRANSFORMERS_OFFLINE) asks for no network."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=8)
def _probe(host: str, port: int, timeout: float) -> bool:
    """Whether `host:port` accepts a TCP connection within `timeout` seconds, name lookup
    included: the connect runs in a daemon thread because getaddrinfo has no timeout of its own
    (without a network it can wait for the resolver's retries). Cached: asked once a process."""
    answer: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=connect, name="emosteer-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the hub (HF_ENDPOINT, default huggingface.co) answers a TCP connect; False under
    HF_HUB_OFFLINE without trying."""
    if offline_by_env():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", HUB_ENDPOINT))
    if not url.hostname:
        return False
    return _probe(url.hostname, url.port or (80 if url.scheme == "http" else 443), float(timeout))


def architecture_config(name: str):
    """(transformers config, do_normalize) of a checkpoint in KNOWN_ARCHITECTURES, built from
    transformers' defaults without a download; KeyError for any other name."""
    import transformers

    cls_name, overrides, normalize = KNOWN_ARCHITECTURES[name]
    return getattr(transformers, cls_name)(**overrides), normalize
