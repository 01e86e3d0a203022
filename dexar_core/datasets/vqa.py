"""Visual question answering sets as JSON lines.

One JSON object per line::

    {"image": "images/0001.jpg", "question": "what colour is the car?",
     "answers": ["red", "red", "dark red"], "id": "q1"}

``image`` is relative to the file's folder (or ``image_root``); ``answers`` may be a
single ``answer`` string; ``id`` defaults to the line number. Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
from PIL import Image

from dexar_core.datasets.read_items import ReadItems, rgb_image
from dexar_core.errors import DatasetError


@attrs.frozen(kw_only=True)
class VQAItem:
    """One question about one image.

    Attributes:
        question_id: the line's ``id`` (or its line number).
        image_path: the image file.
        question: the question text.
        answers: the reference answers (possibly several annotators').
        line: the line number in the file.
    """

    question_id: str
    image_path: Path
    question: str
    answers: tuple[str, ...]
    line: int

    @property
    def answer(self) -> str:
        """The most frequent reference answer (the first among ties); empty when none."""
        return Counter(self.answers).most_common(1)[0][0] if self.answers else ""

    @property
    def image(self) -> Image.Image:
        """The image, as RGB."""
        return rgb_image(self.image_path, f" (line {self.line})")


class VQADataset(ReadItems[VQAItem]):
    """A VQA jsonl file, checked line by line when opened.

    Args:
        path: the ``.jsonl`` file.
        image_root: the folder image paths are relative to; the file's folder by default.

    Raises:
        DatasetError: a missing file, a line that is not a JSON object, a line without an
            image or a question, answers that are not strings, or an image that does not
            exist; each names the file and line and says what to fix.
    """

    def __init__(self, path: str | Path, *, image_root: str | Path | None = None) -> None:
        self.path = Path(path)
        try:
            lines = self.path.read_text().splitlines()
        except OSError as error:
            raise DatasetError(f"cannot read VQA file {str(self.path)!r}: {error}.") from error
        self.image_root = self.path.parent if image_root is None else Path(image_root)
        items = [
            self._item(number, line) for number, line in enumerate(lines, start=1) if line.strip()
        ]
        if not items:
            raise DatasetError(f"VQA file {str(self.path)!r} holds no question.")
        self.items: tuple[VQAItem, ...] = tuple(items)

    def _item(self, number: int, line: str) -> VQAItem:
        where = f"{self.path}:{number}"
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{where}: not valid JSON ({error}); one object per line."
            ) from error
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected a JSON object, found {type(record).__name__}.")
        image = record.get("image")
        if not isinstance(image, str) or not image:
            raise DatasetError(
                f'{where}: no image; every line needs "image": "<path relative to '
                f'{str(self.image_root)!r}>".'
            )
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(f'{where}: no question; every line needs "question": "<text>".')
        answers = record.get("answers", record.get("answer", []))
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DatasetError(
                f'{where}: "answers" must be a list of strings (or "answer" one string), '
                f"found {answers!r}."
            )
        image_path = self.image_root / image
        if not image_path.is_file():
            raise DatasetError(
                f"{where}: image {str(image_path)!r} does not exist; fix the path (relative "
                f"to {str(self.image_root)!r}) or give image_root=."
            )
        return VQAItem(
            question_id=str(record.get("id", number)),
            image_path=image_path,
            question=question,
            answers=tuple(answers),
            line=number,
        )

    def __repr__(self) -> str:
        return f"VQADataset(path={str(self.path)!r}, size={len(self)})"
