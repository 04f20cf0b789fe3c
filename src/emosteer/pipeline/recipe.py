"""Recipes: one YAML file describing a whole experiment, read into frozen dataclasses.

A recipe names a corpus, an encoder and the settings of every stage. `emosteer run RECIPE.yaml`
executes it (`run`); `emosteer demo` is the bundled `demo.yaml` (`--corpus ravdess`:
`demo-ravdess.yaml`, see DEMO_RECIPES). Unknown keys are errors naming the file and the key, so
a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from emosteer.errors import ConfigError
from emosteer.steering.steer import mode_config

CORPUS_KINDS = ("demo", "ravdess", "cremad", "emodb", "tess", "csv")
DOWNLOADABLE = ("ravdess", "cremad")  # the corpora with a public URL (emosteer.download)
# `emosteer demo --corpus NAME` -> the bundled recipe it runs: the offline generated corpus, or
# the same stages, demo-sized, on real acted speech.
DEMO_RECIPES = {"demo": "demo", "ravdess": "demo-ravdess"}


@dataclass(frozen=True)
class CorpusSpec:
    kind: str = "demo"
    root: str | None = None  # where the corpus is (or goes, with download); None: RUN/corpus
    download: bool = False
    speakers: tuple[str, ...] = ()  # keep only these (all when empty)
    # Keep only these emotions (all when empty). For kind demo: the renderings generated
    # (democorpus.RENDERINGS; empty: calm and angry).
    emotions: tuple[str, ...] = ()
    n_sentences: int = 5  # demo only: sentences read by the TTS voice
    n_voices: int = 5  # demo only: pseudo-speakers

    def __post_init__(self) -> None:
        if self.kind not in CORPUS_KINDS:
            raise ConfigError(f"corpus.kind {self.kind!r}: expected one of {', '.join(CORPUS_KINDS)}")
        if self.download and self.kind not in DOWNLOADABLE:
            raise ConfigError(f"corpus.download: only {', '.join(DOWNLOADABLE)} can be downloaded")


@dataclass(frozen=True)
class EncoderSpec:
    model: str = "facebook/wav2vec2-base"
    layer: int = 5  # the axis and mapper layer (the seed's choice)
    probe_layers: tuple[int, ...] = ()  # extra layers stored for the layer sweep
    random_init: bool = False  # the random-init control, on purpose
    fallback_random_init: bool = True  # offline without weights: random init of the same architecture
    pooling: str = "mean"
    bf16: bool = False
    device: str = "cpu"
    seed: int = 0


@dataclass(frozen=True)
class AxisSpec:
    source: str = "calm"
    target: str = "angry"
    normalize_per_speaker: bool = False
    test_speakers: tuple[str, ...] = ()  # held out of the axis, the mapper and the prosody delta


@dataclass(frozen=True)
class MapperSpec:
    max_minutes: float = 15.0
    hidden: int = 256
    n_blocks: int = 6
    n_transformer_layers: int = 0
    batch_size: int = 8
    max_epochs: int = 200
    patience: int = 8
    lr: float = 1e-3
    use_prosody: bool = True


@dataclass(frozen=True)
class SteerSpec:
    vocoder: str = "auto"
    deltas: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    modes: tuple[str, ...] = ("latent", "prosody", "both")
    clips_per_speaker: int = 2
    # evaluate's bootstrap resamples per CI: its cost grows with resamples x cells, not clips,
    # so a demo can trade CI precision (percentiles of 200 move by ~0.03 sd) for a minute
    n_boot: int = 1000

    def __post_init__(self) -> None:
        for spec in self.modes:  # "mode" or "mode:decode"; fail at load, not after training
            mode_config(spec)
        if self.n_boot < 1:
            raise ConfigError(f"steer.n_boot {self.n_boot}: must be >= 1")


@dataclass(frozen=True)
class TtsSpec:
    """The TTS example: the Piper voice reads `text`, steered at each alpha (emosteer tts's rule)
    with the run's own axis and prosody delta. Empty text: no TTS stage."""

    text: str = ""
    alphas: tuple[float, ...] = (-1.0, 0.0, 1.0)
    mode: str = "both"


@dataclass(frozen=True)
class Recipe:
    name: str = "run"
    description: str = ""
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    axis: AxisSpec = field(default_factory=AxisSpec)
    mapper: MapperSpec = field(default_factory=MapperSpec)
    steer: SteerSpec = field(default_factory=SteerSpec)
    tts: TtsSpec = field(default_factory=TtsSpec)
    probe: bool = True
    # the layer sweep's UMAP scatter (PCA is always drawn): numba compiles UMAP afresh in every
    # process, ~16 s on 2 cores however few points there are
    probe_umap: bool = True
    bank: bool = True  # an emotion bank (every other emotion from axis.source) at RUN/bank
    evaluate: bool = True
    report: bool = True

    def replace(self, **sections: dict[str, Any]) -> Recipe:
        """A copy with some fields of some sections changed, e.g. replace(encoder={"model": m})."""
        changes = {}
        for name, values in sections.items():
            current = getattr(self, name)
            changes[name] = (dataclasses.replace(current, **values)
                             if dataclasses.is_dataclass(current) else values)
        return dataclasses.replace(self, **changes)


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                          f"known: {', '.join(fields)}")
    kwargs = {}
    for key, value in data.items():
        sub = _SECTIONS.get(key) if cls is Recipe else None
        if sub is not None:
            kwargs[key] = _build(sub, value or {}, f"{where}: {key}")
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from e


_SECTIONS = {"corpus": CorpusSpec, "encoder": EncoderSpec, "axis": AxisSpec,
             "mapper": MapperSpec, "steer": SteerSpec, "tts": TtsSpec}


def recipe_from_dict(data: dict, source: str = "<recipe>") -> Recipe:
    return _build(Recipe, data, source)


def apply_overrides(recipe: Recipe, overrides: dict[str, Any], source: str = "--set") -> Recipe:
    """`recipe` with {section: {key: value}} (or {field: value}) changed, validated as a whole
    recipe is, so an override can be no more wrong than a recipe file."""
    data = dataclasses.asdict(recipe)
    for section, values in overrides.items():
        if isinstance(values, dict):
            if not isinstance(data.get(section), dict):
                raise ConfigError(f"{source} {section}.*: {section!r} is not a recipe section")
            data[section].update(values)
        else:
            data[section] = values
    return recipe_from_dict(data, source)


def load_recipe(path_or_name: str | Path) -> Recipe:
    """A recipe file, or the name of a bundled one (`demo`, `ravdess`, `cremad`)."""
    import yaml

    path = Path(path_or_name)
    if not path.suffix and not path.exists():
        bundled = resources.files(__package__) / "recipes" / f"{path_or_name}.yaml"
        if not bundled.is_file():
            raise ConfigError(f"{path_or_name}: no such recipe file or bundled recipe "
                              f"({', '.join(bundled_recipes())})")
        text, source = bundled.read_text(encoding="utf-8"), f"recipes/{path_or_name}.yaml"
    else:
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read recipe ({e.strerror or e})") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({e})") from e
    return recipe_from_dict(data or {}, source)


def bundled_recipes() -> list[str]:
    folder = resources.files(__package__) / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
