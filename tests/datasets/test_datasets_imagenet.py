"""ImageNet-style folders and file lists on a tiny tree the tests write."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from dexar_core.datasets.imagenet import ImageFolderDataset, read_class_index
from dexar_core.errors import DatasetError


def write_tree(root):
    for name, count in (("n02", 2), ("n01", 1)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (4, 4), (index, 0, 0)).save(root / name / f"{index}.JPEG")
    (root / "n01" / "notes.txt").write_text("not an image")
    return root


def test_class_sub_folders_sorted_into_indices(tmp_path):
    data = ImageFolderDataset(write_tree(tmp_path))
    assert len(data) == 3
    assert [(item.class_name, item.label) for item in data] == [
        ("n01", 0),
        ("n02", 1),
        ("n02", 1),
    ]
    assert data[0].image.size == (4, 4)


def test_imagenet_class_index_json_gives_indices_and_names(tmp_path):
    root = write_tree(tmp_path / "images")
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"0": ["n02", "goldfish"], "1": ["n01", "tench"]}))
    assert read_class_index(index) == {"n02": (0, "goldfish"), "n01": (1, "tench")}
    data = ImageFolderDataset(root, class_index=index)
    assert {(item.class_name, item.label, item.readable_name) for item in data} == {
        ("n01", 1, "tench"),
        ("n02", 0, "goldfish"),
    }


def test_file_list_with_names_and_indices(tmp_path):
    root = write_tree(tmp_path / "images")
    listing = tmp_path / "val.txt"
    listing.write_text("n02/0.JPEG n02\n\nn01/0.JPEG 0\n")
    data = ImageFolderDataset(root, file_list=listing, class_index={"n01": 0, "n02": 1})
    assert [(item.class_name, item.label) for item in data] == [("n02", 1), ("n01", 0)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("n02/0.JPEG", r"val\.txt:2: expected '<relative path> <label>'"),
        ("n02/9.JPEG 1", r"val\.txt:2: image .*9\.JPEG' does not exist"),
        ("n02/0.JPEG n99", r"val\.txt:2: label 'n99' is not an index"),
        ("n02/0.JPEG 7", r"val\.txt:2: label 7 is not in the class index"),
    ],
)
def test_bad_list_lines_name_file_and_line(tmp_path, line, message):
    root = write_tree(tmp_path / "images")
    listing = tmp_path / "val.txt"
    listing.write_text(f"n01/0.JPEG 0\n{line}\n")
    with pytest.raises(DatasetError, match=message):
        ImageFolderDataset(root, file_list=listing, class_index={"n01": 0, "n02": 1})


def test_empty_folder_and_unknown_class_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match=r"class folders \['n02'\]"):
        ImageFolderDataset(write_tree(tmp_path / "images"), class_index={"n01": 0})
