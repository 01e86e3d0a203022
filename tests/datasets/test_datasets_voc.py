"""VOC-style segmentation folders on a tiny tree the tests write."""

from __future__ import annotations

import pytest
from voc_folders import write_voc

from dexar_core.datasets.voc import VOCSegmentation
from dexar_core.errors import DatasetError


def test_reads_images_masks_void_and_object_union(tmp_path):
    data = VOCSegmentation(write_voc(tmp_path))
    assert len(data) == 2 and data.ids == ("a", "b")
    item = data[0]
    assert item.image.size == (6, 4) and item.classes.shape == (4, 6)
    assert item.present_classes == (3, 15)
    assert item.object_mask.sum() == 5  # 4 person pixels + 1 of class 3, void excluded
    assert not item.valid[0].any() and item.valid[1:].all()
    assert [i.image_id for i in data] == ["a", "b"]


def test_missing_mask_names_the_ids_and_folder(tmp_path):
    root = write_voc(tmp_path)
    (root / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"1 id\(s\) have no a mask.*SegmentationClass.*'b'"):
        VOCSegmentation(root)


def test_missing_split_list_says_what_is_expected(tmp_path):
    root = write_voc(tmp_path)
    with pytest.raises(DatasetError, match=r"ImageSets/Segmentation/train\.txt"):
        VOCSegmentation(root, split="train")
    with pytest.raises(DatasetError, match="does not exist"):
        VOCSegmentation(tmp_path / "nowhere")


def test_mask_of_another_size_names_both_files(tmp_path):
    data = VOCSegmentation(write_voc(tmp_path, mask_size=(5, 4)))
    with pytest.raises(DatasetError, match=r"a\.png.*5x4.*a\.jpg.*6x4"):
        data[0]


def test_colour_mask_is_rejected_with_the_fix(tmp_path):
    data = VOCSegmentation(write_voc(tmp_path, mask_mode="RGB"))
    with pytest.raises(DatasetError, match="class indices"):
        data[0]
