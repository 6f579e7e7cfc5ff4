"""One event per sound: related classes of one sound joined, with the real AudioSet ontology
and on a real soundscape (a siren, a car horn and a voice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from earmark import cli
from earmark.events import Event
from earmark.labels import Ontology
from earmark.outputs import read_events
from earmark.sounds import join_related, related

SIREN, POLICE, AMBULANCE, EMERGENCY = "/m/03kmc9", "/m/04qvtq", "/m/012n7d", "/m/03j1ly"
HORN, VEHICLE, SPEECH, DOG = "/m/0912c9", "/m/07yv9", "/m/09x0r", "/m/0bt9lr"


@pytest.fixture(scope="module")
def ontology(model_dir: Path) -> Ontology:
    return Ontology.from_json(model_dir / "ontology.json")


def ev(label: str, mid: str, onset: float, offset: float, peak: float, file: str = "f") -> Event:
    return Event(file, label, mid, onset, offset, peak, peak * 0.6)


def test_related_in_the_ontology(ontology: Ontology) -> None:
    assert related(POLICE, SIREN, ontology)  # Police car (siren) is below Siren
    assert related(POLICE, EMERGENCY, ontology)  # ... and below Emergency vehicle
    assert related(POLICE, AMBULANCE, ontology)  # siblings
    assert not related(SIREN, SPEECH, ontology)
    assert not related(DOG, HORN, ontology)
    assert not related("custom:Kettle", SIREN, ontology)


def test_one_sound_becomes_one_event(ontology: Ontology) -> None:
    siren = [
        ev("Siren", SIREN, 2.0, 7.7, 0.89),
        ev("Emergency vehicle", EMERGENCY, 2.0, 7.3, 0.88),
        ev("Police car (siren)", POLICE, 2.0, 7.3, 0.89),
        ev("Ambulance (siren)", AMBULANCE, 2.0, 7.3, 0.30),
    ]
    horn = ev("Vehicle horn, car horn, honking", HORN, 5.1, 5.6, 0.26)
    voice = ev("Speech", SPEECH, 7.1, 7.8, 0.71)
    dog_elsewhere = ev("Siren", SIREN, 2.0, 7.7, 0.5, file="g")  # another file: kept apart
    out = join_related([*siren, horn, voice, dog_elsewhere], ontology)
    assert [(e.file, e.label) for e in out] == [
        ("f", "Police car (siren)"),
        ("f", "Vehicle horn, car horn, honking"),
        ("f", "Speech"),
        ("g", "Siren"),
    ]
    police = out[0]
    # the most specific confident class names it, with its own times and scores
    assert (police.onset, police.offset, police.peak) == (2.0, 7.3, 0.89)
    assert [a[0] for a in police.alternatives] == [
        "Siren",
        "Emergency vehicle",
        "Ambulance (siren)",
    ]
    assert police.alternatives[0] == ("Siren", SIREN, 0.89)
    union = join_related(siren, ontology, span="union")
    assert [(e.onset, e.offset) for e in union] == [(2.0, 7.7)]


def test_a_confident_general_class_beats_a_doubtful_specific_one(ontology: Ontology) -> None:
    """Ambulance (siren) is deeper than Siren but far less sure: Siren names the sound."""
    out = join_related(
        [ev("Siren", SIREN, 1.0, 4.0, 0.9), ev("Ambulance (siren)", AMBULANCE, 1.0, 4.0, 0.2)],
        ontology,
    )
    assert [(e.label, [a[0] for a in e.alternatives]) for e in out] == [
        ("Siren", ["Ambulance (siren)"])
    ]


def test_two_occurrences_of_the_named_class_stay_two_events(ontology: Ontology) -> None:
    """Siren twice, both overlapping one doubtful Ambulance (siren) event: Siren names the
    sound, and its two occurrences are not merged into one."""
    events = [
        ev("Ambulance (siren)", AMBULANCE, 2.0, 7.0, 0.2),
        ev("Siren", SIREN, 2.0, 4.0, 0.9),
        ev("Siren", SIREN, 5.0, 7.0, 0.9),
    ]
    out = join_related(events, ontology)
    assert [(e.label, e.onset, e.offset) for e in out] == [
        ("Siren", 2.0, 4.0),
        ("Siren", 5.0, 7.0),
    ]
    assert [a[0] for a in out[0].alternatives] == ["Ambulance (siren)"]


def test_little_overlap_is_not_one_sound(ontology: Ontology) -> None:
    events = [
        ev("Siren", SIREN, 0.0, 10.0, 0.9),
        ev("Emergency vehicle", EMERGENCY, 8.5, 12.0, 0.8),
    ]
    assert join_related(events, ontology) == events  # intersection over union 0.125
    # Police car (siren) is below Siren; measured over the shorter event they overlap
    # 1.5 / 3.5 = 0.43 (over their union 0.125): one sound at 0.4 by that measure only
    pair = [ev("Siren", SIREN, 0.0, 10.0, 0.9), ev("Police car (siren)", POLICE, 8.5, 12.0, 0.8)]
    assert len(join_related(pair, ontology, min_overlap=0.4)) == 2
    (joined,) = join_related(pair, ontology, min_overlap=0.4, overlap="shorter")
    assert joined.label == "Police car (siren)" and [x[0] for x in joined.alternatives] == ["Siren"]
    with pytest.raises(ValueError, match="min_overlap"):
        join_related(events, ontology, min_overlap=0.0)
    with pytest.raises(ValueError, match="overlap must be"):
        join_related(events, ontology, overlap="longer")
    with pytest.raises(ValueError, match="span"):
        join_related(events, ontology, span="longest")


def test_detect_reports_one_event_per_sound(
    fixtures_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    """The scaper soundscape holds a siren (2-7 s), a car horn (5.0-5.7 s) and a voice: by
    default the siren is one event with its other classes as alternatives, the horn stays its
    own event; ``--every-class`` reports each class as before."""
    wav = fixtures_dir / "scaper_soundscape_20200501_22050.wav"
    assert cli.main(["detect", str(wav), "-o", str(tmp_path / "one"), "-q"]) == 0
    args = ["detect", str(wav), "-o", str(tmp_path / "all"), "--every-class", "-q"]
    assert cli.main(args) == 0
    one = read_events(tmp_path / "one" / "events.csv")
    every = read_events(tmp_path / "all" / "events.json")
    assert len(one) < len(every)
    sirens = [e for e in one if {e.mid, *(a[1] for a in e.alternatives)} & {SIREN, POLICE}]
    assert len(sirens) == 1 and sirens[0].onset < 2.5 and sirens[0].offset > 6.5
    assert sum(e.mid in (SIREN, POLICE, AMBULANCE, EMERGENCY) for e in every) >= 3
    horns = [e for e in one if e.mid == HORN]
    assert len(horns) == 1 and 4.8 < horns[0].onset < 5.3
    # nothing is lost: every class of --every-class is an event or an alternative
    named = {e.label for e in one} | {a[0] for e in one for a in e.alternatives}
    assert {e.label for e in every} <= named
    assert read_events(tmp_path / "one" / "events.json") == one  # JSON and CSV agree
