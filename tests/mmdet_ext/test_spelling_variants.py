"""LVIS's known spelling variants (core/class_names.py) against mmdet 2.28's own hard-coded class lists: each pair
is mmdet's name at the recorded index of each LVIS version and a name mmdet's list does not hold; with the full
lists, a checkpoint of mmdet's spelling passes a test set of the files' spelling with one note, and any other
difference is refused naming the index and both names."""

from __future__ import annotations

import pytest
from mmdet.datasets.lvis import LVISV1Dataset, LVISV05Dataset

from loce_cli.core.class_names import KNOWN_VARIANTS, SPELLING_VARIANTS, compare_names
from loce_cli.errors import DataError
from loce_cli.mmdet_ext.inference import check_test_classes

MMDET = {"v1": tuple(LVISV1Dataset.CLASSES), "v0.5": tuple(LVISV05Dataset.CLASSES)}


def test_mmdet_lists_have_the_lvis_sizes():
    assert (len(MMDET["v1"]), len(MMDET["v0.5"])) == (1203, 1230)


@pytest.mark.parametrize("variant", KNOWN_VARIANTS, ids=lambda v: v[0])
def test_each_variant_is_mmdets_name_against_one_it_lacks(variant):
    mmdet_name, official, indices = variant
    assert mmdet_name != official and frozenset((mmdet_name, official)) in SPELLING_VARIANTS
    assert set(indices) == {"v1", "v0.5"}
    for version, index in indices.items():
        names = MMDET[version]
        assert names[index] == mmdet_name and names.count(mmdet_name) == 1
        assert official not in names


@pytest.mark.parametrize("version", ["v1", "v0.5"])
def test_known_variants_pass_with_one_note_and_others_are_named(version, capsys):
    mmdet_names = MMDET[version]
    official = list(mmdet_names)
    for mmdet_name, theirs, indices in KNOWN_VARIANTS:
        official[indices[version]] = theirs
    official = tuple(official)
    comparison = compare_names(mmdet_names, official)
    assert comparison.same and [i for i, _, _ in comparison.variants] == [v[2][version] for v in KNOWN_VARIANTS]
    check_test_classes(mmdet_names, official, "zoo.pth", "val.json")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "known spelling variants" in err and f"index {KNOWN_VARIANTS[0][2][version]}" in err
    other = official[:100] + ("bicycle_(mountain)",) + official[101:]  # not a known variant
    with pytest.raises(DataError, match=rf"first difference at index 100: {mmdet_names[100]!r} vs "
                                        r"'bicycle_\(mountain\)'"):
        check_test_classes(mmdet_names, other, "zoo.pth", "val.json")
    near = official[:5] + (official[5] + "s",) + official[6:]  # one letter off is not a variant either
    with pytest.raises(DataError, match="index 5"):
        check_test_classes(mmdet_names, near, "zoo.pth", "val.json")
