"""Layer-wise SSL embeddings: load an encoder (hub id or local path, or its random-init
control), extract a labelled corpus into an on-disk store, and read the store back."""

from emosteer.embeddings.encoders import (
    Encoder,
    EncoderConfig,
    EncoderIdentity,
    check_identity,
    load_encoder,
)
from emosteer.embeddings.extract import extract_corpus, extract_store
from emosteer.embeddings.fallback import load_encoder_or_control
from emosteer.embeddings.store import POOLINGS, EmbeddingStore, StoreConfig, import_embeddings

__all__ = ["POOLINGS", "EmbeddingStore", "Encoder", "EncoderConfig", "EncoderIdentity",
           "StoreConfig", "check_identity", "extract_corpus", "extract_store", "import_embeddings",
           "load_encoder", "load_encoder_or_control"]
