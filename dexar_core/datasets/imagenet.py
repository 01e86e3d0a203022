"""ImageNet-style image classification folders.

Two layouts:

- class sub-folders: ``root/<class>/<image>``; classes are the sorted folder names
  unless a class-index map gives their indices;
- a file list: one ``<relative path> <label>`` per line (label: an index or a class
  name), with a class-index map naming the classes.

A class-index map is a JSON file, either ``{"<class>": index}`` or ImageNet's
``{"<index>": ["<wnid>", "<readable name>"]}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from PIL import Image

from dexar_core.datasets.read_items import ReadItems, rgb_image
from dexar_core.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@attrs.frozen(kw_only=True)
class ClassifiedImage:
    """One image and its class.

    Attributes:
        path: the image file.
        label: the class index.
        class_name: the class's folder name or wnid.
        readable_name: a human-readable name where the map gives one, else ``class_name``.
    """

    path: Path
    label: int
    class_name: str
    readable_name: str

    @property
    def image(self) -> Image.Image:
        """The image, as RGB."""
        return rgb_image(self.path)


def read_class_index(path: str | Path) -> dict[str, tuple[int, str]]:
    """Read a class-index map: class name -> (index, readable name).

    Raises:
        DatasetError: the file is missing, not JSON, or neither accepted form.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise DatasetError(f"cannot read class-index map {str(path)!r}: {error}.") from error
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"class-index map {str(path)!r} is not valid JSON ({error}); expected "
            '{"<class>": index} or {"<index>": ["<wnid>", "<name>"]}.'
        ) from error
    if not isinstance(data, dict) or not data:
        raise DatasetError(f"class-index map {str(path)!r} must be a non-empty JSON object.")
    classes: dict[str, tuple[int, str]] = {}
    for key, value in data.items():
        if isinstance(value, int) and not isinstance(value, bool):
            classes[str(key)] = (value, str(key))
        elif isinstance(value, list) and len(value) == 2 and str(key).isdigit():
            classes[str(value[0])] = (int(key), str(value[1]))
        else:
            raise DatasetError(
                f"class-index map {str(path)!r}: entry {key!r}: {value!r} is neither "
                '"<class>": index nor "<index>": ["<wnid>", "<name>"].'
            )
    return classes


class ImageFolderDataset(ReadItems[ClassifiedImage]):
    """An ImageNet-style dataset from class sub-folders or a file list.

    Args:
        root: the images' root folder.
        file_list: a text file of ``<relative path> <label>`` lines; None reads the class
            sub-folders of ``root``.
        class_index: a class-index map (JSON path or a mapping class -> index); required
            with ``file_list`` when labels are names, optional for sub-folders.

    Raises:
        DatasetError: a missing root, no image found, a malformed list line (file and line
            named), a missing listed image, or a label the class index does not know.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        file_list: str | Path | None = None,
        class_index: str | Path | Mapping[str, int] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(
                f"image folder {str(self.root)!r} does not exist or is not a folder."
            )
        self.classes = _class_map(class_index)
        items = self._from_list(Path(file_list)) if file_list else self._from_folders()
        if not items:
            raise DatasetError(
                f"no image ({', '.join(IMAGE_EXTENSIONS)}) found under {str(self.root)!r}; "
                "expected root/<class>/<image> or a file list."
            )
        self.items: tuple[ClassifiedImage, ...] = tuple(items)

    def _from_folders(self) -> list[ClassifiedImage]:
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not self.classes:
            self.classes = {p.name: (index, p.name) for index, p in enumerate(folders)}
        unknown = [p.name for p in folders if p.name not in self.classes]
        if unknown:
            raise DatasetError(
                f"class folders {unknown[:5]} under {str(self.root)!r} are not in the class "
                "index; add them to the map or remove the folders."
            )
        items = []
        for folder in folders:
            label, readable = self.classes[folder.name]
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    items.append(
                        ClassifiedImage(
                            path=path, label=label, class_name=folder.name, readable_name=readable
                        )
                    )
        return items

    def _from_list(self, listing: Path) -> list[ClassifiedImage]:
        try:
            lines = listing.read_text().splitlines()
        except OSError as error:
            raise DatasetError(f"cannot read file list {str(listing)!r}: {error}.") from error
        by_index = {index: name for name, (index, _) in self.classes.items()}
        items = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{listing}:{number}"
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise DatasetError(
                    f"{where}: expected '<relative path> <label>', found {line.strip()!r}."
                )
            relative, label_text = parts
            path = self.root / relative
            if not path.is_file():
                raise DatasetError(
                    f"{where}: image {str(path)!r} does not exist; fix the path (relative to "
                    f"{str(self.root)!r}) or remove the line."
                )
            if label_text.lstrip("-").isdigit():
                label = int(label_text)
                name = by_index.get(label, label_text)
                if self.classes and label not in by_index:
                    raise DatasetError(
                        f"{where}: label {label} is not in the class index; expected one of "
                        f"0..{max(by_index)}."
                    )
                readable = self.classes[name][1] if name in self.classes else name
            elif label_text in self.classes:
                name = label_text
                label, readable = self.classes[name]
            else:
                raise DatasetError(
                    f"{where}: label {label_text!r} is not an index and not a class of the "
                    "class index; give class_index= with this class, or use integer labels."
                )
            items.append(
                ClassifiedImage(path=path, label=label, class_name=name, readable_name=readable)
            )
        return items

    def __repr__(self) -> str:
        return f"ImageFolderDataset(root={str(self.root)!r}, size={len(self)})"


def _class_map(class_index: Any) -> dict[str, tuple[int, str]]:
    if class_index is None:
        return {}
    if isinstance(class_index, Mapping):
        return {str(name): (int(index), str(name)) for name, index in class_index.items()}
    return read_class_index(class_index)
