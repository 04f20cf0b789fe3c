"""match_speakers: the one rule for naming speakers (evaluate and train-mapper share it)."""

from __future__ import annotations

import pytest

from emosteer.corpora import match_speakers
from emosteer.errors import ConfigError

SPEAKERS = {"ravdess_01", "ravdess_02", "ravdess_03", "cremad_01", "spk0"}


def test_full_names_suffixes_and_ranges():
    assert match_speakers(["spk0", "ravdess_02"], SPEAKERS) == ("spk0", "ravdess_02")
    assert match_speakers(["01"], SPEAKERS) == ("cremad_01", "ravdess_01")  # every corpus
    assert match_speakers(["02-03", "ravdess_02"], SPEAKERS) == ("ravdess_02", "ravdess_03")
    with pytest.raises(ConfigError, match="--test-speakers: no speaker '09'"):
        match_speakers(["09"], SPEAKERS, "--test-speakers")
