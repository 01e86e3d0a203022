"""Any image input gives an RGB image or an ImageError, never another exception."""

from __future__ import annotations

import io

import numpy as np
from conftest import record, timed
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from dexar_core.errors import ImageError
from dexar_core.images import load_image

MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr", "HSV")
FORMATS = ("PNG", "JPEG", "GIF", "TIFF", "WEBP", "BMP")
EXIF_ORIENTATION = 0x0112


def loads_or_refuses(target: str, source, **options) -> None:
    with timed(target):
        try:
            image = load_image(source, **options)
        except ImageError as error:
            assert str(error), "an ImageError must say what was wrong"
            record(target, "ImageError")
            return
    assert image.mode == "RGB" and min(image.size) >= 1
    record(target, "RGB image")


SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)
UNIT_FLOATS = st.floats(0, 1, width=32)


@given(
    hnp.arrays(
        dtype=st.sampled_from(["uint8", "uint16", "int32", "float32", "float64", "bool", "int8"]),
        shape=SHAPES,
    )
    | hnp.arrays(dtype="float32", shape=SHAPES, elements=UNIT_FLOATS)
)
def test_arrays(array):
    loads_or_refuses("image array", array)


@given(
    mode=st.sampled_from(MODES),
    size=st.tuples(st.integers(0, 9), st.integers(0, 9)),
    orientation=st.integers(0, 9),
    file_format=st.sampled_from(FORMATS),
    frames=st.integers(1, 3),
    frame=st.none() | st.integers(-1, 3),
)
def test_files_of_every_mode_size_orientation_and_frame_count(
    tmp_path_factory, mode, size, orientation, file_format, frames, frame
):
    image = Image.new(mode, size)
    path = tmp_path_factory.mktemp("img") / f"image.{file_format.lower()}"
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    try:
        extra = [Image.new(mode, size) for _ in range(frames - 1)]
        image.save(path, format=file_format, exif=exif, save_all=frames > 1, append_images=extra)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError, MemoryError):
        return  # Pillow cannot write this combination: nothing to read back
    loads_or_refuses("image file", path, frame=frame)


def encoded(file_format: str) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8)
    Image.fromarray(pixels).save(buffer, format=file_format)
    return buffer.getvalue()


@given(
    file_format=st.sampled_from(FORMATS),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8),
)
def test_corrupt_bytes(tmp_path_factory, file_format, cut, flips):
    data = bytearray(encoded(file_format))
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    path = tmp_path_factory.mktemp("bytes") / f"corrupt.{file_format.lower()}"
    path.write_bytes(bytes(data[: max(1, int(cut * len(data)))]))
    loads_or_refuses("corrupt file", path)


@given(st.binary(max_size=64))
def test_random_bytes(tmp_path_factory, payload):
    path = tmp_path_factory.mktemp("bytes") / "random.png"
    path.write_bytes(payload)
    loads_or_refuses("random bytes", path)
