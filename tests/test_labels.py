"""Class names and indices: the offline ImageNet names, resolution by name or index, suggestions for typos."""

from __future__ import annotations

import numpy as np
import pytest

from teaching.errors import ClassNameError
from teaching.labels import imagenet_classes, read_labels, resolve_classes

LABELS = imagenet_classes()


def test_the_imagenet_names_are_offline_and_in_torchvision_order():
    assert len(LABELS) == 1000
    assert (LABELS[0], LABELS[2], LABELS[4], LABELS[999]) == (
        "tench",
        "great white shark",
        "hammerhead",
        "toilet tissue",
    )
    assert (LABELS[101], LABELS[385], LABELS[386]) == ("tusker", "Indian elephant", "African elephant")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["African elephant"], [386]),
        (["african elephant", "INDIAN ELEPHANT"], [386, 385]),
        (["African_elephant", "great-white-shark", "  tiger   shark "], [386, 2, 3]),
        ([386, 385, 101], [386, 385, 101]),
        (["386", " 4 ", "0"], [386, 4, 0]),
        ([np.int64(321), np.int32(322)], [321, 322]),
        (["tabby", 243, "101"], [281, 243, 101]),
    ],
)
def test_names_indices_and_digit_strings_resolve(given, expected):
    assert resolve_classes(given, LABELS) == expected


def test_names_that_differ_only_in_case_need_the_exact_case():
    assert resolve_classes(["Cardigan", "cardigan"], LABELS) == [264, 474]
    with pytest.raises(ClassNameError, match=r"ambiguous: 'Cardigan' \(264\) or 'cardigan' \(474\)"):
        resolve_classes(["CARDIGAN"], LABELS)


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("Afrikan elephant", "'African elephant'"),
        ("hammerhed", "'hammerhead'"),
        ("great white", "'great white shark'"),  # a part of a name suggests the names that contain it
        ("tiger_shrak", "'tiger shark'"),
    ],
)
def test_typos_suggest_the_closest_names(typo, suggestion):
    with pytest.raises(ClassNameError) as info:
        resolve_classes([typo], LABELS)
    message = str(info.value)
    assert message.startswith(f"unknown class name {typo!r}; did you mean ")
    assert suggestion in message and "\n" not in message


def test_a_name_with_nothing_close_says_what_to_give():
    with pytest.raises(ClassNameError, match=r"unknown class name 'qqqqqqqq'; give a class index \(0\.\.999\)"):
        resolve_classes(["qqqqqqqq"], LABELS)


@pytest.mark.parametrize("index", [1000, -1, "1000", "-3"])
def test_out_of_range_indices_are_refused(index):
    with pytest.raises(ClassNameError, match=r"class index -?\d+ is out of range \(0\.\.999\)"):
        resolve_classes([index], LABELS)


def test_custom_labels_and_their_range():
    labels = ("healthy leaf", "rust")
    assert resolve_classes(["Rust", 0, "1"], labels) == [1, 0, 1]
    with pytest.raises(ClassNameError, match=r"out of range \(0\.\.1\)"):
        resolve_classes([2], labels)
    with pytest.raises(ClassNameError, match="did you mean 'rust'"):
        resolve_classes(["rusty"], labels)


def test_no_class_is_an_error():
    with pytest.raises(ClassNameError, match="no target class given"):
        resolve_classes([], LABELS)


def test_read_labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("healthy leaf\n\n  rust  \n", encoding="utf-8")
    assert read_labels(path) == ("healthy leaf", "rust")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ClassNameError, match="has no class names"):
        read_labels(tmp_path / "empty.txt")
    with pytest.raises(ClassNameError, match="cannot read the labels file"):
        read_labels(tmp_path / "missing.txt")
