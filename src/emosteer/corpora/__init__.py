"""Labelled corpora: scan CREMA-D, RAVDESS, EmoDB, TESS or a CSV manifest into utterances, and
download the public ones (checksummed, resumable)."""

from emosteer.corpora.download import SOURCES, download_corpus
from emosteer.corpora.formats import (
    EMOTIONS,
    FORMATS,
    Utterance,
    count_table,
    format_table,
    match_speakers,
    normalize_emotion,
    read_manifest,
    scan_corpus,
)

__all__ = ["EMOTIONS", "FORMATS", "SOURCES", "Utterance", "count_table", "download_corpus",
           "format_table", "match_speakers", "normalize_emotion", "read_manifest", "scan_corpus"]
