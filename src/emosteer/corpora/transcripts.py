"""The fixed texts of the acted corpora, so that the ASR judge has a real reference transcript.

Every supported corpus reads a closed set of sentences and encodes which one in the file name;
the corpus adapters store that code as `Utterance.sentence`:

- RAVDESS: statement 01 / 02 (two English sentences);
- CREMA-D: a three-letter sentence code (12 English sentences);
- EmoDB: a text code a01 ... b10 (10 German sentences);
- TESS: the target word itself ("Say the word X").

`transcript(corpus, sentence)` returns the text, or None when the corpus has no fixed text
(a CSV manifest: its optional `text` column is the transcript) or the code is unknown.
"""

from __future__ import annotations

RAVDESS = {
    "01": "Kids are talking by the door.",
    "02": "Dogs are sitting by the door.",
}

CREMAD = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}

# Burkhardt et al. (2005), "A database of German emotional speech", text codes.
EMODB = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}

TESS_CARRIER = "Say the word {word}."

LANGUAGES = {"ravdess": "en", "cremad": "en", "tess": "en", "emodb": "de"}

_ALIASES = {"crema-d": "cremad", "crema_d": "cremad", "emo-db": "emodb", "emo_db": "emodb"}


def _corpus_key(corpus: str) -> str:
    key = str(corpus).strip().lower()
    return _ALIASES.get(key, key)


def transcript(corpus: str, sentence: str | None) -> str | None:
    """The text spoken in a clip of `corpus` with sentence code `sentence`, or None if unknown.

    `corpus`: ravdess, cremad, emodb, tess (case-insensitive; "crema-d" and "emo-db" accepted);
    any other corpus (e.g. csv) has no fixed text. `sentence`: the code from the file name
    (RAVDESS "01"/"02" or 1/2, CREMA-D "IEO", EmoDB "a01", TESS the word)."""
    if sentence is None:
        return None
    key = _corpus_key(corpus)
    code = str(sentence).strip()
    if not code:
        return None
    if key == "ravdess":
        return RAVDESS.get(code.zfill(2))
    if key == "cremad":
        return CREMAD.get(code.upper())
    if key == "emodb":
        return EMODB.get(code.lower())
    if key == "tess":
        word = code.replace("_", " ").strip()
        return TESS_CARRIER.format(word=word) if word else None
    return None


def language(corpus: str) -> str | None:
    """The language of a corpus's fixed texts (ISO 639-1), or None when not known."""
    return LANGUAGES.get(_corpus_key(corpus))
