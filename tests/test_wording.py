"""Changes as people read them (``notifications.wording``): local time, the reader's
language, one sentence for what happened rather than raw stored values."""

from __future__ import annotations

import pytest

from notifications.wording import describe, sentences

SEP14 = "2027-09-14T21:59:59+00:00"  # 14 September 23:59:59 in Stockholm
OCT1 = "2027-10-01T21:59:59+00:00"
NOV3_NOON = "2027-11-03T11:00:00+00:00"  # 12:00 in Stockholm (CET)


@pytest.mark.parametrize(
    ("field", "old", "new", "sv", "en"),
    [
        (
            "deadlines",
            [SEP14],
            [OCT1],
            ["Sista ansökningsdag flyttad: 14 september 2027 → 1 oktober 2027"],
            ["Deadline moved: 14 September 2027 → 1 October 2027"],
        ),
        (
            "deadlines",
            [SEP14],
            [SEP14, OCT1],
            ["Ny andra sista ansökningsdag: 1 oktober 2027"],
            ["New second deadline: 1 October 2027"],
        ),
        (
            "deadlines",
            [],
            [NOV3_NOON],
            ["Ny sista ansökningsdag: 3 november 2027 kl. 12:00"],
            ["New deadline: 3 November 2027, 12:00"],
        ),
        (
            "deadlines",
            [SEP14, OCT1],
            [OCT1],
            ["Första sista ansökningsdagen borttagen (var 14 september 2027)"],
            ["First deadline removed (was 14 September 2027)"],
        ),
        (
            "status",
            "forthcoming",
            "open",
            ["Status: Kommande → Öppen"],
            ["Status: Forthcoming → Open"],
        ),
        ("status", None, "open", ["Status: Öppen"], ["Status: Open"]),
        (
            "opening",
            "2027-02-01T07:00:00+00:00",
            "2027-02-15T07:00:00+00:00",
            ["Öppnar flyttad: 1 februari 2027 kl. 08:00 → 15 februari 2027 kl. 08:00"],
            ["Opening moved: 1 February 2027, 08:00 → 15 February 2027, 08:00"],
        ),
        ("summary", "a", "b", ["Beskrivningen har ändrats"], ["The description changed"]),
        (
            "budget",
            None,
            "EUR 3 000 000",
            ["Budget: ingen → EUR 3 000 000"],
            ["Budget: none → EUR 3 000 000"],
        ),
    ],
)
def test_a_change_reads_as_a_sentence(
    field: str, old: object, new: object, sv: list[str], en: list[str]
) -> None:
    assert describe(field, old, new, "sv") == sv
    assert describe(field, old, new, "en") == en


def test_a_history_entry_is_every_sentence_in_order_and_nothing_is_cut() -> None:
    long_title = "Utlysning om " + "kompetensförsörjning " * 5
    said = sentences(
        [
            {"field": "title", "old": "Kort", "new": long_title.strip()},
            {"field": "deadlines", "old": [SEP14], "new": [OCT1]},
        ]
    )
    assert said == [
        f"Ny titel: «{long_title.strip()}» (var «Kort»)",
        "Sista ansökningsdag flyttad: 14 september 2027 → 1 oktober 2027",
    ]
