"""VQA jsonl files on a tiny tree the tests write."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from dexar_core.datasets.vqa import VQADataset
from dexar_core.errors import DatasetError


def write_vqa(root, lines):
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (5, 5), (200, 0, 0)).save(root / "images" / "red.png")
    path = root / "questions.jsonl"
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    )
    return path


GOOD = {"image": "images/red.png", "question": "what colour?", "answers": ["red", "red", "pink"]}


def test_reads_questions_answers_and_images(tmp_path):
    single = {"image": "images/red.png", "question": "and now?", "answer": "red", "id": 7}
    data = VQADataset(write_vqa(tmp_path, [GOOD, "", single]))
    assert len(data) == 2
    first, second = data
    assert first.question_id == "1" and first.answers == ("red", "red", "pink")
    assert first.answer == "red" and first.image.size == (5, 5)
    assert second.question_id == "7" and second.line == 3


def test_image_root_option(tmp_path):
    path = write_vqa(tmp_path / "data", [{**GOOD, "image": "red.png"}])
    data = VQADataset(path, image_root=tmp_path / "data" / "images")
    assert data[0].image_path.name == "red.png"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"question": "what?", "answers": []}, r"questions\.jsonl:2: no image"),
        ({"image": "images/red.png"}, r"questions\.jsonl:2: no question"),
        ("{not json", r"questions\.jsonl:2: not valid JSON"),
        ("[1, 2]", r"questions\.jsonl:2: expected a JSON object"),
        ({**GOOD, "image": "images/blue.png"}, r"questions\.jsonl:2: image .*blue\.png"),
        ({**GOOD, "answers": [1]}, r"questions\.jsonl:2: \"answers\" must be a list of strings"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write_vqa(tmp_path, [GOOD, line])
    with pytest.raises(DatasetError, match=message):
        VQADataset(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DatasetError, match="cannot read VQA file"):
        VQADataset(tmp_path / "none.jsonl")
    with pytest.raises(DatasetError, match="no question"):
        VQADataset(write_vqa(tmp_path, ["", "  "]))
