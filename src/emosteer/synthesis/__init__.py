"""From SSL frames back to audio: the mel definition, the frames -> mel mapper (model, data,
training) and the vocoders (HiFi-GAN, Griffin-Lim, exported and registered ones)."""

from emosteer.synthesis.mapper import Mapper, MapperConfig, load_mapper
from emosteer.synthesis.mel import HIFIGAN_22K, SSL_16K, MelConfig, log_mel_spectrogram
from emosteer.synthesis.train import train_mapper, train_mapper_on_corpus
from emosteer.synthesis.vocoders import (
    Vocoder,
    available_vocoders,
    export_vocoder,
    load_vocoder,
    register_vocoder,
)

__all__ = ["HIFIGAN_22K", "SSL_16K", "Mapper", "MapperConfig", "MelConfig", "Vocoder",
           "available_vocoders", "export_vocoder", "load_mapper", "load_vocoder",
           "log_mel_spectrogram", "register_vocoder", "train_mapper",
           "train_mapper_on_corpus"]
