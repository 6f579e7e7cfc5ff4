"""Class labels and the AudioSet ontology, checked against the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from earmark.labels import (
    Label,
    Ontology,
    UnknownLabelError,
    group_plan,
    group_scores,
    load_labels,
    resolve_label_set,
)

TOP_LEVEL = [
    "Human sounds",
    "Animal",
    "Music",
    "Natural sounds",
    "Sounds of things",
    "Source-ambiguous sounds",
    "Channel, environment and background",
]


@pytest.fixture(scope="module")
def labels(model_dir: Path) -> list[Label]:
    return load_labels(model_dir / "class_labels_indices.csv")


@pytest.fixture(scope="module")
def ontology(model_dir: Path) -> Ontology:
    return Ontology.from_json(model_dir / "ontology.json")


def index_of(labels: list[Label], name: str) -> int:
    return next(lab.index for lab in labels if lab.name == name)


# -- load_labels ------------------------------------------------------------------------


def test_load_labels_real_file(labels):
    assert len(labels) == 527
    assert labels[0] == Label(0, "/m/09x0r", "Speech")
    assert labels[1] == Label(1, "/m/05zppz", "Male speech, man speaking")
    assert labels[74] == Label(74, "/m/0bt9lr", "Dog")
    assert [lab.index for lab in labels] == list(range(527))
    assert len({lab.mid for lab in labels}) == 527


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c\n0,/m/1,x\n", "index,mid,display_name"),
        ("index,mid,display_name\n0,/m/1,x\n2,/m/2,y\n", "out of order"),
        ("index,mid,display_name\nzero,/m/1,x\n", "not an integer"),
        ("index,mid,display_name\n0,/m/1,x\n1,/m/1,y\n", "repeats index 0"),
        ("index,mid,display_name\n0,,x\n", "empty mid"),
        ("index,mid,display_name\n", "no class labels"),
        ("", "index,mid,display_name"),
    ],
)
def test_load_labels_bad_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "bad_labels.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        load_labels(path)
    assert "bad_labels.csv" in str(info.value)


def test_load_labels_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_labels(tmp_path / "nope.csv")


# -- Ontology ---------------------------------------------------------------------------


def test_ontology_top_level_and_size(ontology):
    assert len(ontology) == 632
    assert [ontology.name(mid) for mid in ontology.top_level()] == TOP_LEVEL
    assert all(ontology.depth(mid) == 0 for mid in ontology.top_level())


def test_ontology_name_and_mid_lookup(ontology):
    assert ontology.mid("Dog") == "/m/0bt9lr"
    assert ontology.mid("dOG") == "/m/0bt9lr"
    assert ontology.mid("  domestic animals, pets ") == "/m/068hy"
    assert ontology.name("/m/0bt9lr") == "Dog"
    assert ontology.find("/m/0bt9lr") == "/m/0bt9lr"
    assert ontology.find("human SOUNDS") == "/m/0dgw9r"
    assert ontology.find("Dgo") is None
    assert ontology.restrictions("/m/0dgw9r") == ("abstract",)
    assert "/m/0bt9lr" in ontology


def test_ontology_unknown_name_suggests(ontology):
    with pytest.raises(KeyError) as info:
        ontology.mid("Dgo")
    assert str(info.value) == "unknown ontology class name 'Dgo'. Did you mean: 'Dog'?"
    with pytest.raises(UnknownLabelError, match="unknown ontology mid '/m/nothing'"):
        ontology.name("/m/nothing")
    with pytest.raises(KeyError):
        ontology.parents("/m/nothing")


def test_ontology_structure(ontology):
    m = ontology.mid
    assert ontology.parents(m("Dog")) == [m("Domestic animals, pets")]
    assert ontology.parents(m("Animal")) == []
    assert ontology.children(m("Domestic animals, pets")) == [m("Dog"), m("Cat")]
    assert ontology.ancestors(m("Dog")) == {m("Domestic animals, pets"), m("Animal")}
    assert ontology.ancestors(m("Animal")) == set()
    names = {ontology.name(d) for d in ontology.descendants(m("Dog"))}
    assert names == {"Bark", "Yip", "Howl", "Bow-wow", "Growling", "Whimper (dog)", "Bay"}
    assert m("Dog") not in ontology.descendants(m("Dog"))
    # several parents
    growling_parents = [ontology.name(p) for p in ontology.parents(m("Growling"))]
    assert growling_parents == [
        "Dog",
        "Cat",
        "Roaring cats (lions, tigers)",
        "Canidae, dogs, wolves",
    ]
    assert m("Wild animals") in ontology.ancestors(m("Growling"))
    assert m("Growling") in ontology.descendants(m("Cat"))


def test_ontology_depth(ontology):
    m = ontology.mid
    assert ontology.depth(m("Animal")) == 0
    assert ontology.depth(m("Domestic animals, pets")) == 1
    assert ontology.depth(m("Dog")) == 2
    assert ontology.depth(m("Vehicle")) == 1
    assert ontology.depth(m("Car")) == 3
    assert ontology.depth(m("Speech")) == 2
    # Hiss is below Cat (depth 2) and below Onomatopoeia (depth 1): min over paths
    assert ontology.depth(m("Hiss")) == 2


def test_ontology_from_json_errors(tmp_path):
    bad = tmp_path / "onto.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"onto\.json"):
        Ontology.from_json(bad)
    bad.write_text('[{"id": "/m/a", "name": "A", "child_ids": ["/m/zz"]}]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"onto.json.*unknown child /m/zz"):
        Ontology.from_json(bad)
    bad.write_text('[{"id": "/m/a", "child_ids": []}]', encoding="utf-8")
    with pytest.raises(ValueError, match="has no 'name'"):
        Ontology.from_json(bad)


def test_small_ontology_diamond():
    # a -> b -> d, a -> c -> d, e -> d : d has three paths, depth 1 via e
    onto = Ontology(
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        {"a": ["b", "c"], "b": ["d"], "c": ["d"], "e": ["d"]},
    )
    assert onto.top_level() == ["a", "e"]
    assert onto.depth("d") == 1
    assert onto.ancestors("d") == {"a", "b", "c", "e"}
    assert onto.descendants("a") == {"b", "c", "d"}
    assert onto.parents("d") == ["b", "c", "e"]


# -- resolve_label_set ------------------------------------------------------------------


def test_resolve_without_ontology(labels):
    assert resolve_label_set(labels, ["Dog"]) == [74]
    assert resolve_label_set(labels, ["dog", "/m/09x0r"]) == [0, 74]
    assert resolve_label_set(labels, "Speech") == [0]


def test_resolve_with_descendants(labels, ontology):
    dog = resolve_label_set(labels, ["Dog"], ontology)
    assert [labels[i].name for i in dog] == [
        "Dog",
        "Bark",
        "Yip",
        "Howl",
        "Bow-wow",
        "Growling",
        "Whimper (dog)",
    ]
    assert resolve_label_set(labels, ["/m/0bt9lr"], ontology) == dog
    assert resolve_label_set(labels, ["Dog"], ontology, include_descendants=False) == [74]
    animal = resolve_label_set(labels, ["ANIMAL"], ontology)
    assert len(animal) == 65
    assert {72, 73, 74, 75, 81, 84} <= set(animal)
    assert 0 not in animal


def test_resolve_category_that_is_not_a_class(labels, ontology):
    human = resolve_label_set(labels, ["Human sounds"], ontology)
    assert len(human) == 72
    assert 0 in human  # Speech
    with pytest.raises(ValueError, match="selects no model class"):
        resolve_label_set(labels, ["Human sounds"], ontology, include_descendants=False)


def test_resolve_unknown_lists_close_matches(labels, ontology):
    with pytest.raises(ValueError, match=r"unknown class 'Anmal'\. Did you mean: 'Animal'") as info:
        resolve_label_set(labels, ["Dog", "Anmal"], ontology)
    assert isinstance(info.value, KeyError)
    with pytest.raises(ValueError, match="unknown class 'Human sounds'"):
        resolve_label_set(labels, ["Human sounds"])  # needs the ontology


# -- group_scores -----------------------------------------------------------------------


def groups_by_name(groups: list[Label]) -> dict[str, int]:
    return {g.name: g.index for g in groups}


def test_group_parent_dog_goes_to_domestic_animals(labels, ontology):
    scores = np.zeros((4, 527), dtype=np.float32)
    scores[0, index_of(labels, "Dog")] = 0.8
    scores[1, index_of(labels, "Cat")] = 0.5
    scores[2, index_of(labels, "Domestic animals, pets")] = 0.6  # the group's own class
    scores[3, index_of(labels, "Bark")] = 0.9  # Bark's parent is Dog, not this group
    grouped, groups = group_scores(scores, labels, ontology, "parent")
    assert [g.index for g in groups] == list(range(len(groups)))
    g = groups_by_name(groups)
    pets = groups[g["Domestic animals, pets"]]
    assert pets.mid == "/m/068hy"
    np.testing.assert_array_equal(grouped[:, pets.index], np.float32([0.8, 0.5, 0.6, 0.0]))
    # the "Dog" group: its children (Bark, ...) and Dog's own score
    np.testing.assert_array_equal(grouped[:, g["Dog"]], np.float32([0.8, 0.0, 0.0, 0.9]))
    # "Domestic animals, pets" is itself a class: it also rolls up into Animal
    np.testing.assert_array_equal(grouped[:, g["Animal"]], np.float32([0.0, 0.0, 0.6, 0.0]))
    assert grouped.dtype == np.float32
    assert grouped.shape == (4, len(groups))
    assert len(groups) == 149


def test_group_parent_several_parents(labels, ontology):
    scores = np.zeros((1, 527), dtype=np.float32)
    scores[0, index_of(labels, "Growling")] = 0.7
    grouped, groups = group_scores(scores, labels, ontology, "parent")
    nonzero = sorted(groups[i].name for i in np.flatnonzero(grouped[0]))
    assert nonzero == ["Canidae, dogs, wolves", "Cat", "Dog", "Roaring cats (lions, tigers)"]


def test_group_top_level(labels, ontology):
    scores = np.zeros((3, 527), dtype=np.float32)
    scores[0, index_of(labels, "Speech")] = 0.9
    scores[1, index_of(labels, "Car")] = 0.4
    scores[2, index_of(labels, "Hiss")] = 0.3
    grouped, groups = group_scores(scores, labels, ontology, "top")
    assert [g.name for g in groups] == TOP_LEVEL
    g = groups_by_name(groups)
    np.testing.assert_array_equal(grouped[:, g["Human sounds"]], np.float32([0.9, 0, 0]))
    np.testing.assert_array_equal(grouped[:, g["Sounds of things"]], np.float32([0, 0.4, 0]))
    # Hiss is below Animal, Natural sounds and Source-ambiguous sounds
    hiss = sorted(groups[i].name for i in np.flatnonzero(grouped[2]))
    assert hiss == ["Animal", "Natural sounds", "Source-ambiguous sounds"]
    same, same_groups = group_scores(scores, labels, ontology, "0")
    np.testing.assert_array_equal(same, grouped)
    assert same_groups == groups


def test_group_depth(labels, ontology):
    scores = np.zeros((3, 527), dtype=np.float32)
    scores[0, index_of(labels, "Car")] = 0.4
    scores[1, index_of(labels, "Vehicle")] = 0.5
    scores[2, index_of(labels, "Animal")] = 0.6
    grouped, groups = group_scores(scores, labels, ontology, "1")
    g = groups_by_name(groups)
    assert len(groups) == 44
    np.testing.assert_array_equal(grouped[:, g["Vehicle"]], np.float32([0.4, 0.5, 0]))
    # Animal is shallower than depth 1: it stays itself
    np.testing.assert_array_equal(grouped[:, g["Animal"]], np.float32([0, 0, 0.6]))
    assert "Sounds of things" not in g
    grouped2, groups2 = group_scores(scores, labels, ontology, 2)
    g2 = groups_by_name(groups2)
    np.testing.assert_array_equal(grouped2[:, g2["Motor vehicle (road)"]], np.float32([0.4, 0, 0]))
    np.testing.assert_array_equal(grouped2[:, g2["Vehicle"]], np.float32([0, 0.5, 0]))


def test_group_scores_matches_naive_max(labels, ontology):
    rng = np.random.default_rng(3)
    scores = rng.random((5000, 527), dtype=np.float32)
    for level in ("parent", "top", "1", "2", "5"):
        grouped, groups = group_scores(scores, labels, ontology, level)
        members, plan_groups = group_plan(labels, ontology, level)
        assert plan_groups == groups
        expected = np.stack([scores[:, m].max(axis=1) for m in members], axis=1)
        np.testing.assert_array_equal(grouped, expected)
    # a deep enough level leaves every class alone
    grouped, groups = group_scores(scores, labels, ontology, "10")
    assert {g.mid for g in groups} == {lab.mid for lab in labels}


def test_group_subset_and_unknown_mid(ontology):
    subset = [
        Label(0, "/m/0bt9lr", "Dog"),
        Label(1, "/m/custom", "My sound"),
        Label(2, "/m/01yrx", "Cat"),
    ]
    scores = np.array([[0.1, 0.2, 0.3], [0.6, 0.0, 0.4]], dtype=np.float32)
    grouped, groups = group_scores(scores, subset, ontology, "parent")
    assert groups == [
        Label(0, "/m/068hy", "Domestic animals, pets"),
        Label(1, "/m/custom", "My sound"),
    ]
    np.testing.assert_array_equal(grouped, np.float32([[0.3, 0.2], [0.6, 0.0]]))


def test_group_scores_errors(labels, ontology):
    scores = np.zeros((2, 527), dtype=np.float32)
    for level in ("grandparent", "-1", "1.5", True):
        with pytest.raises(ValueError, match="invalid group level"):
            group_scores(scores, labels, ontology, level)
    with pytest.raises(ValueError, match="shape"):
        group_scores(np.zeros((2, 5)), labels, ontology, "top")
    empty, groups = group_scores(np.zeros((0, 527), dtype=np.float32), labels, ontology, "top")
    assert empty.shape == (0, 7)
    assert len(groups) == 7
