"""A bank from the real pretrained wav2vec2-base layer-5 embeddings of RAVDESS actors 01-08
(angry and happy clips only, no audio): axes only, held-out AUC on actors 07-08."""

from __future__ import annotations

import pytest

from emosteer.bank import build_bank
from emosteer.embeddings.store import import_embeddings


def test_real_bank_separates_unseen_actors(real_embeddings, tmp_path):
    store = import_embeddings(real_embeddings / "embeddings.npy", real_embeddings / "index.csv",
                              5, tmp_path / "store", model="facebook/wav2vec2-base")
    # only angry and happy are there, so happy is the reference of the one axis
    bank = build_bank(store.root, tmp_path / "bank", reference="happy",
                      holdout_speakers=["07", "08"])
    assert bank.emotions == ("angry",) and bank.config.layer == 5
    assert bank.config.holdout == ("ravdess_07", "ravdess_08")
    assert bank.config.encoder.model == "facebook/wav2vec2-base"
    d = bank.diagnostics["per_emotion"]["angry"]
    assert d["n_speakers"] == 6 and d["holdout"]["n_test"] == 32
    assert d["holdout"]["auc_raw"] > 0.75 and d["holdout"]["auc_centred"] > 0.75
    assert d["agreement"] == pytest.approx(1.0) and d["mean_pairwise_cosine"] > 0.2
    assert bank.prosody("angry") is None and "no audio" in d["prosody_note"]
    assert bank.config.prosody_speakers == ()
