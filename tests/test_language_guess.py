"""The language guess of ``normalise`` (items whose source names no language): counted
word by word, it must count the marker words and letters as the three expressions it
replaced do, on real items and on text made to trip it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from watcher.pipeline.normalise import _expression_counts, _guess_language, _marker_counts

DATA = Path(__file__).parent / "data"


def real_texts() -> list[str]:
    texts = []
    for name in ("classification-dev.jsonl", "classification-dev-2.jsonl"):
        for line in (DATA / "classification" / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.append(f"{row['title']} {row.get('summary', '')}")
    return texts


def test_real_items_count_the_same() -> None:
    texts = real_texts()
    assert len(texts) > 100
    for text in texts:
        assert _marker_counts(text) == _expression_counts(text), text[:80]


# Marker words in every case, pieces of them, letters alone and inside words, and what
# IGNORECASE folds unlike str.lower ("ſ" as "s", the Kelvin sign as "k", "İ" as "i").
_WORDS = (
    "och att för med som är till av på inom utlysning utlysningar utlysninger "
    "og ikke søknad frist prosjekt the and of for with call to is "
    "OCH För ÄR PÅ Och THE Is SØKNAD Utlysning "
    "å ä ö æ ø Å Ä Ö Æ Ø påbörja fören ärende søk færd "
    "ſom Kall İs ıs ß µ é ü 1 _ - – ’ … € : . , ( ) /"
)
PIECES = _WORDS.split(" ")


def test_made_up_text_counts_the_same() -> None:
    rng = random.Random(14)
    for _ in range(3000):
        parts = rng.choices(PIECES, k=rng.randint(1, 12))
        seps = rng.choices(["", " ", "  ", "-", "_", ".", "\n", "/", "å", "1"], k=len(parts))
        text = "".join(p + s for p, s in zip(parts, seps, strict=True))
        assert _marker_counts(text) == _expression_counts(text), text


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Utlysning inom ESF+ för kompetensförsörjning", "sv"),
        ("Call for proposals to support the integration of migrants", "en"),
        ("Søknadsfrist for prosjekt og tilskudd", "no"),
        ("2027-03-01", "und"),
        ("ſom ſom ſom", "sv"),  # IGNORECASE reads "ſom" as "som": so do the counts
    ],
)
def test_guesses(text: str, language: str) -> None:
    assert _guess_language(text) == language
