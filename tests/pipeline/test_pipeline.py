"""Recipes, the offline encoder fallback and the resumable pipeline (`emosteer run` / `demo`)."""

from __future__ import annotations

import html
import json

import pytest

from emosteer.cli import main
from emosteer.cli.run import parse_overrides
from emosteer.errors import ConfigError
from emosteer.pipeline.democorpus import DEMO_NOTICE, SENTENCES, VOICES
from emosteer.pipeline.recipe import (
    DEMO_RECIPES,
    Recipe,
    apply_overrides,
    bundled_recipes,
    load_recipe,
    recipe_from_dict,
)
from emosteer.report.build import build_report

VERDICT_DELTAS = {-1.0, 0.0, 1.0}  # what the report's verdict panel reads
RAVDESS_SOURCE_CLIPS = 8  # per actor and emotion other than neutral: 2 statements x 2 intensities x 2 takes


def test_bundled_recipes_parse():
    assert {"demo", "demo-ravdess", "ravdess", "cremad"} <= set(bundled_recipes())
    assert set(DEMO_RECIPES.values()) <= set(bundled_recipes())
    for name in bundled_recipes():
        r = load_recipe(name)
        assert r.encoder.model == "facebook/wav2vec2-base" and r.encoder.layer == 5
    assert load_recipe("ravdess").corpus.download and not load_recipe("ravdess").encoder.fallback_random_init


def eval_clips(recipe: Recipe) -> dict[str, int]:
    """Held-out speaker -> clips evaluate steers (it takes up to clips_per_speaker of the
    speaker's source-emotion clips): one per sentence in the demo corpus, 8 per RAVDESS actor."""
    c, per = recipe.corpus, recipe.steer.clips_per_speaker
    if c.kind == "demo":
        voices = {v.name for v in VOICES[:c.n_voices]}
        return {s: min(per, c.n_sentences) if s in voices else 0 for s in recipe.axis.test_speakers}
    return {s: min(per, RAVDESS_SOURCE_CLIPS) if not c.speakers or s in c.speakers else 0
            for s in recipe.axis.test_speakers}


@pytest.mark.parametrize("name", sorted(DEMO_RECIPES.values()))
def test_demo_geometry_answers_does_it_work(name):
    """Both demos: >= 2 held-out speakers, >= 16 evaluation clips, the latent and prosody
    methods (and on RAVDESS their sum) at the verdict's -1/0/+1, the real vocoder ('auto'),
    a bank, and the emotions the axis needs."""
    r = load_recipe(name)
    clips = eval_clips(r)
    assert len(r.axis.test_speakers) >= 2 and all(n > 0 for n in clips.values()), clips
    assert sum(clips.values()) >= 16, clips
    assert VERDICT_DELTAS <= set(r.steer.deltas)
    assert set(r.steer.modes) == ({"latent", "prosody"} if r.corpus.kind == "demo"
                                  else {"latent", "prosody", "both"})
    assert r.steer.vocoder == "auto" and r.bank and r.evaluate and r.report
    assert {r.axis.source, r.axis.target} <= set(r.corpus.emotions)
    if r.corpus.kind == "demo":
        assert r.corpus.n_sentences <= len(SENTENCES)
    else:
        assert r.corpus.download and set(r.axis.test_speakers) <= set(r.corpus.speakers)
        assert len(set(r.corpus.speakers) - set(r.axis.test_speakers)) >= 2  # for the axis


def test_unknown_key_names_file_and_key(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nencoder:\n  modle: foo\n")
    with pytest.raises(ConfigError, match=r"r\.yaml.*encoder.*modle"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="kind"):
        recipe_from_dict({"corpus": {"kind": "voxceleb"}})
    with pytest.raises(ConfigError, match="no such recipe"):
        load_recipe("nonexistent")


def test_overrides_are_yaml_typed():
    o = parse_overrides(["encoder.layer=7", "steer.deltas=[-1, 1]", "probe=false"])
    assert o == {"encoder": {"layer": 7}, "steer": {"deltas": (-1, 1)}, "probe": False}
    with pytest.raises(ConfigError):
        parse_overrides(["nonsense"])
    assert Recipe().replace(encoder={"layer": 3}).encoder.layer == 3
    assert apply_overrides(Recipe(), o).steer.deltas == (-1, 1)
    with pytest.raises(ConfigError, match="n_boot"):
        apply_overrides(Recipe(), {"steer": {"n_boot": 0}})
    with pytest.raises(ConfigError, match="not a recipe section"):
        apply_overrides(Recipe(), {"probe": {"x": 1}})


def test_offline_fallback_is_a_labelled_random_init_control(tmp_path, monkeypatch):
    from emosteer.embeddings import fallback as fb

    monkeypatch.setattr(fb, "hub_reachable", lambda timeout=0: False)
    monkeypatch.setitem(fb.KNOWN_ARCHITECTURES, "org/tiny-w2v2", (
        "Wav2Vec2Config", dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                               intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                               conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                               num_conv_pos_embedding_groups=2), True))
    enc, note = fb.load_encoder_or_control("org/tiny-w2v2", (2,), tmp_path / "enc")
    assert enc.config.random_init and enc.config.hidden_size == 32
    assert "RANDOM-INIT" in note and "org/tiny-w2v2" in note
    with pytest.raises(ConfigError, match="not known"):
        fb.load_encoder_or_control("org/unknown", (2,), tmp_path / "enc2")
    with pytest.raises(ConfigError, match="not reachable"):
        fb.load_encoder_or_control("org/tiny-w2v2", (2,), tmp_path / "enc3", fallback=False)


def test_local_model_loads_without_note(tiny_model_dir, tmp_path):
    from emosteer.embeddings.fallback import load_encoder_or_control

    enc, note = load_encoder_or_control(str(tiny_model_dir), (2,), tmp_path / "enc")
    assert note == "" and not enc.config.random_init


def tiny_recipe(tiny_model_dir) -> list[str]:
    return ["--set", "corpus.n_sentences=2", "--set", "corpus.n_voices=3",
            "--set", "axis.test_speakers=[spk_c]", "--set", f"encoder.model={tiny_model_dir}",
            "--set", "encoder.layer=2", "--set", "encoder.probe_layers=[1]",
            "--set", "mapper.hidden=16", "--set", "mapper.n_blocks=1",
            "--set", "mapper.max_epochs=2", "--set", "steer.deltas=[0, 1]",
            "--set", "steer.modes=[latent, prosody]", "--set", "steer.clips_per_speaker=1",
            "--set", "probe=false", "--no-progress"]  # the probe has its own tests; UMAP's JIT is slow


def test_demo_pipeline_runs_and_resumes(tiny_model_dir, tmp_path, caplog):
    """Through the TTS example (evaluate and report have their own tests; the full run is slow)."""
    out = tmp_path / "run"
    args = ["demo", "--out", str(out), *tiny_recipe(tiny_model_dir)]
    assert main([*args, "--stop-after", "axis"]) == 0
    # the synthetic corpus's notice: on the console at the start and at the end, and in run.json
    assert caplog.text.count(DEMO_NOTICE) == 2
    assert "emosteer demo --corpus ravdess" in DEMO_NOTICE and "WORLD renderings" in DEMO_NOTICE
    state = json.loads((out / "run.json").read_text())
    assert state["notices"] == [DEMO_NOTICE]
    assert list(state["stages"]) == ["corpus", "extract", "axis"]
    assert state["encoder"]["note"] == ""
    manifest = (out / "corpus" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "path,speaker,emotion,sentence,text" and SENTENCES[0] in manifest[1]
    assert (out / "axis" / "prosody.json").is_file()
    assert state["stages"]["axis"]["result"]["holdout"]["test_speakers"] == ["spk_c"]
    store_mtime = (out / "store" / "store.json").stat().st_mtime_ns

    caplog.set_level("INFO")
    assert main([*args, "--stop-after", "tts"]) == 0
    assert "extract: done earlier, skipped" in caplog.text
    assert "corpus: done earlier, skipped" in caplog.text
    assert (out / "store" / "store.json").stat().st_mtime_ns == store_mtime
    state = json.loads((out / "run.json").read_text())
    assert list(state["stages"]) == ["corpus", "extract", "axis", "bank", "mapper", "steer", "tts"]
    assert all(s["status"] == "done" for s in state["stages"].values())
    assert state["notices"] == [DEMO_NOTICE] and state["bank"] == "bank"
    assert state["stages"]["bank"]["result"]["emotions"] == ["angry"]
    assert (out / "bank" / "bank.json").is_file() and (out / "bank" / "angry" / "prosody.json").is_file()
    sweep = json.loads((out / "steer" / "sweep.json").read_text())
    assert len(sweep["items"]) == 2 * 2 and sweep["speaker"] == "spk_c"
    assert all((out / "steer" / it["path"]).is_file() for it in sweep["items"])
    assert (out / "mapper" / "mapper.safetensors").is_file()
    tts = json.loads((out / "tts" / "sweep.json").read_text())
    assert [it["alpha"] for it in tts["items"]] == [-1.0, 0.0, 1.0]
    assert all((out / "tts" / it["path"]).is_file() for it in tts["items"])

    # the report shows the notice on top and the bank (the evaluate-less report is quick)
    page = html.unescape(build_report(out).read_text())
    assert DEMO_NOTICE in page[:page.index('<section id="bank">')]

    # a different recipe in the same directory is refused, not silently mixed
    assert main([*args, "--set", "encoder.layer=1"]) == 2


def test_demo_corpus_is_rebuilt_when_its_spec_changes(tmp_path, monkeypatch):
    """RUN/corpus survives -f: a corpus of other sentences or emotions must not be reused."""
    from emosteer.pipeline import democorpus

    calls = []
    monkeypatch.setattr(democorpus, "synthesize",
                        lambda text, **kw: (calls.append(text), (democorpus.np.zeros(8000, "float32"), 16000))[1])
    monkeypatch.setattr(democorpus, "analyze", lambda wav, sr: None)
    monkeypatch.setattr(democorpus, "transform",
                        lambda a, sr, v, r: democorpus.np.full(1600, 0.1, "float32"))
    democorpus.build_demo_corpus(tmp_path, 1, 1)
    democorpus.build_demo_corpus(tmp_path, 1, 1)
    assert len(calls) == 1
    democorpus.build_demo_corpus(tmp_path, 1, 1, emotions=("calm", "angry", "sad", "happy"))
    assert len(calls) == 2
    rows = (tmp_path / "manifest.csv").read_text().splitlines()[1:]
    assert [r.split(",")[2] for r in rows] == ["calm", "angry", "sad", "happy"]
    with pytest.raises(ConfigError, match="fear"):
        democorpus.build_demo_corpus(tmp_path, 1, 1, emotions=("calm", "fear"))
    with pytest.raises(ConfigError, match="n_sentences"):
        democorpus.build_demo_corpus(tmp_path, len(SENTENCES) + 1, 1)


@pytest.mark.slow
def test_demo_pipeline_full(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), *tiny_recipe(tiny_model_dir)]) == 0
    state = json.loads((out / "run.json").read_text())
    assert list(state["stages"]) == ["corpus", "extract", "axis", "bank", "mapper", "steer",
                                     "tts", "evaluate", "report"]
    evaluation = json.loads((out / "evaluate" / "evaluate.json").read_text())
    assert {c["speaker"] for c in evaluation["clips"]} == {"spk_c"}
    page = html.unescape((out / "index.html").read_text())
    assert "<audio" in page and "spk_c" in page and DEMO_NOTICE in page
