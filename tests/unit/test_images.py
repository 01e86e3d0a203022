"""load_image: the inputs people have (phone photos, float arrays, tensors, GIFs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core.errors import ImageError
from dexar_core.images import load_image

EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6  # the stored pixels must be turned 90 degrees clockwise to be upright


def two_by_five() -> np.ndarray:
    """A 2-row, 5-column image with a distinct colour per pixel."""
    return np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3) * 8


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.fromarray(two_by_five())
    exif = stored.getexif()
    exif[EXIF_ORIENTATION] = ROTATED_90_CW
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=100)

    upright = load_image(path)

    assert upright.size == (2, 5)  # width and height swapped: shown upright


def test_float_arrays_in_zero_one_are_scaled_not_blackened():
    image = load_image(np.full((4, 5, 3), 0.5, dtype=np.float32))

    assert np.asarray(image).min() == 128


@pytest.mark.parametrize("value", [-0.1, 1.5, 255.0])
def test_float_arrays_outside_zero_one_are_refused(value):
    with pytest.raises(ImageError, match=r"in \[0, 1\].*divide 0\.\.255 values by 255"):
        load_image(np.full((4, 5, 3), value, dtype=np.float64))


def test_non_finite_floats_are_refused():
    array = np.zeros((4, 4), dtype=np.float32)
    array[1, 1] = np.nan
    with pytest.raises(ImageError, match="NaN or infinity"):
        load_image(array)


def test_channel_first_arrays_and_tensors_match_channel_last():
    expected = np.asarray(load_image(two_by_five()))

    first = load_image(np.moveaxis(two_by_five(), -1, 0))
    tensor = load_image(torch.from_numpy(np.moveaxis(two_by_five(), -1, 0)).float() / 255)
    batch = load_image(torch.from_numpy(np.moveaxis(two_by_five(), -1, 0))[None])

    np.testing.assert_array_equal(np.asarray(first), expected)
    np.testing.assert_array_equal(np.asarray(tensor), expected)
    np.testing.assert_array_equal(np.asarray(batch), expected)


def test_a_batch_of_several_images_is_refused():
    with pytest.raises(ImageError, match="is a batch"):
        load_image(torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize(
    ("shape", "message"),
    [((0, 4, 3), "no side of 0"), ((4, 4, 2), "has 2 channels"), ((2, 2, 2, 2), "must be")],
)
def test_unusable_array_shapes_are_refused(shape, message):
    with pytest.raises(ImageError, match=message):
        load_image(np.zeros(shape, dtype=np.uint8))


def test_integer_arrays_outside_0_255_are_refused():
    with pytest.raises(ImageError, match=r"must hold 0\.\.255, found 0\.\.4095"):
        load_image(np.array([[0, 4095]], dtype=np.uint16))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "I", "F", "1", "CMYK"])
def test_every_pillow_mode_becomes_rgb(mode):
    image = load_image(Image.new(mode, (3, 2)))

    assert (image.mode, image.size) == ("RGB", (3, 2))


def animated_gif(path, frames=3):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)][:frames]
    pictures = [Image.new("RGB", (4, 4), colour) for colour in colours]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=100, loop=0)
    return path


def test_a_multi_frame_image_needs_a_frame(tmp_path):
    path = animated_gif(tmp_path / "anim.gif")

    with pytest.raises(ImageError, match=r"has 3 frames; choose one \(0..2\) with --frame N"):
        load_image(path)
    second = load_image(path, frame=1)
    assert np.asarray(second)[0, 0].tolist() == [0, 255, 0]
    with pytest.raises(ImageError, match=r"frame must be 0\.\.2, got 3"):
        load_image(path, frame=3)


def test_a_single_frame_image_takes_frame_0_only(tmp_path):
    path = tmp_path / "still.png"
    Image.new("RGB", (4, 4)).save(path)

    assert load_image(path, frame=0).size == (4, 4)
    with pytest.raises(ImageError, match=r"frame must be 0\.\.0"):
        load_image(path, frame=1)


@pytest.mark.parametrize(
    "payload", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a\x01"]
)
def test_corrupt_files_are_an_image_error(tmp_path, payload):
    path = tmp_path / "broken.png"
    path.write_bytes(payload)

    with pytest.raises(ImageError, match="could not be read as an image"):
        load_image(path)


def test_a_truncated_jpeg_is_an_image_error(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])

    with pytest.raises(ImageError, match="could not be read"):
        load_image(path)


def test_an_empty_pil_image_is_refused():
    with pytest.raises(ImageError, match="it is empty"):
        load_image(Image.new("RGB", (0, 3)))
