import pytest

from loce_cli.core.frequency import frequency_group, group_counts, parse_split


@pytest.mark.parametrize("n,group", [(0, "r"), (1, "r"), (10, "r"), (11, "c"), (100, "c"), (101, "f"), (5000, "f")])
def test_lvis_thresholds(n, group):
    assert frequency_group(n) == group


def test_negative_count_rejected():
    with pytest.raises(ValueError):
        frequency_group(-1)


def test_group_counts_has_all_keys():
    assert group_counts(["r", "f", "f"]) == {"r": 1, "c": 0, "f": 2}
    with pytest.raises(ValueError):
        group_counts(["x"])


@pytest.mark.parametrize("name,expected", [("all", ["r", "c", "f"]), ("Rare", ["r"]), ("common", ["c"]),
                                           ("f", ["f"])])
def test_parse_split(name, expected):
    assert parse_split(name) == expected


def test_parse_split_unknown():
    with pytest.raises(ValueError, match="unknown split"):
        parse_split("medium")
