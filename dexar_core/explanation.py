"""The Explanation record: what ``explain()`` returns, saves and loads."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
from PIL import Image

from dexar_core.errors import InputError
from dexar_core.heatmap import paste_to_image
from dexar_core.interfaces import ANSWER_TOKENS, PROMPTS, UNITS
from dexar_core.values import Grid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMAT_VERSION = 1
# Written to the .npz, not the .json; the raw maps were added within format 1 (an older
# .npz simply lacks them).
_ARRAY_FIELDS = (
    "token_maps",
    "sequence_maps",
    "raw_token_maps",
    "raw_sequence_maps",
    "token_weights",
    "head_weights",
    "grids",
    "images",
)


def _readonly_float_array(value: Any) -> np.ndarray:
    array = np.array(value, dtype=np.float32)
    array.setflags(write=False)
    return array


def _readonly_maps(value: Any) -> tuple[np.ndarray, ...]:
    return tuple(_readonly_float_array(item) for item in value)


def _pictures(value: Iterable[Any]) -> tuple[Image.Image, ...]:
    """RGB PIL images from PIL images or ``[H, W, 3]`` uint8 arrays (as saved)."""
    return tuple(
        item.convert("RGB") if isinstance(item, Image.Image) else Image.fromarray(np.asarray(item))
        for item in value
    )


def _drawing(alpha: float | None, cmap: str | None) -> dict[str, Any]:
    """The drawing options given, so that the figures' own defaults hold for the rest."""
    return {name: value for name, value in (("alpha", alpha), ("cmap", cmap)) if value is not None}


def _grid_tuple(value: Iterable[Grid]) -> tuple[Grid, ...]:
    return tuple(value)


def _maps_eq(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def plain_copy(value: Any, *, non_finite_as_none: bool = False) -> Any:
    """A JSON-ready copy: str keys, tuples as lists, numpy scalars as Python ones.

    Args:
        value: a mapping, sequence or scalar, nested to any depth.
        non_finite_as_none: write NaN and infinities as None, for a file that must stay
            strict JSON (an explanation keeps them: its options and timings are exact).
    """
    if isinstance(value, Mapping):
        return {
            str(key): plain_copy(item, non_finite_as_none=non_finite_as_none)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [plain_copy(item, non_finite_as_none=non_finite_as_none) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if non_finite_as_none and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@attrs.frozen(kw_only=True)
class Explanation:
    """Per-unit and sequence heatmaps of one answer, with everything needed to read them.

    The units (:attr:`units`) are the answer's tokens for a generative model, the
    prompts for a contrastive one (then ``tokens`` are the prompts, ``token_ids`` their
    indices, ``answer`` is empty and the sequence map combines the prompts' maps).
    Maps are given per grid (one grid per image, tile or frame group), at token-grid
    resolution, min-max normalised to [0, 1]; :meth:`upsample` draws them at pixel
    resolution over the original images. The unnormalised maps are kept beside them
    (``raw_token_maps``, ``raw_sequence_maps``), so magnitudes can be compared across
    tokens; explanations saved before they were kept load with them empty.

    Attributes:
        method: name of the method that made the maps, e.g. ``"dexar"``.
        options: the method's options as used.
        model_id: the model path, hub id or embedded name.
        adapter: the adapter that served the model.
        prompt: the user's prompt.
        answer: the explained answer text ("" for prompts).
        units: what the ``T`` units are: ``"answer tokens"`` or ``"prompts"``.
        token_ids: ``[T]`` the explained tokens (prompts: their indices).
        tokens: ``[T]`` their text (prompts: the prompts).
        grids: where each map lies (token grid and pixel box of the original image).
        image_sizes: ``(width, height)`` of each original image.
        token_maps: per grid, ``[T, h, w]``.
        sequence_maps: per grid, ``[h, w]``.
        raw_token_maps: per grid, ``[T, h, w]`` before min-max normalisation (empty when
            not kept, e.g. read from a file saved before they were).
        raw_sequence_maps: per grid, ``[h, w]`` before normalisation (empty likewise).
        token_weights: ``[T]`` the method's weight of each unit in the sequence map:
            DEX-AR's delta^t (ones for methods without token weighting). Never a
            similarity: a contrastive model's are in ``metadata["similarities"]``.
        head_weights: ``[T, L, H]`` (empty for methods without head weighting).
        layers: decoder layers explained.
        sequence_fallback: True when every delta was 0 and the sequence map weighs
            every token by 1 instead.
        minmax_after_upsampling: True when the method normalises its maps after
            upsampling (LeGrad on a contrastive model): :meth:`upsample` min-maxes each
            map again at pixel resolution; the grid maps are min-maxed on the grid.
        generated: True for a free-run answer, False for a given (teacher-forced) one.
        timings: seconds spent per stage.
        metadata: adapter facts and anything else worth keeping.
        images: the original pictures, one per entry of ``image_sizes``, for drawing
            (empty when the input was a video or the file was saved before they were
            kept); not compared.
    """

    method: str
    options: Mapping[str, Any] = attrs.field(converter=plain_copy)
    model_id: str
    adapter: str
    prompt: str
    answer: str
    units: str = attrs.field(default=ANSWER_TOKENS, validator=attrs.validators.in_(UNITS))
    token_ids: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    tokens: tuple[str, ...] = attrs.field(converter=tuple)
    grids: tuple[Grid, ...] = attrs.field(converter=_grid_tuple)
    image_sizes: tuple[tuple[int, int], ...] = attrs.field(
        converter=lambda v: tuple((int(w), int(h)) for w, h in v)
    )
    token_maps: tuple[np.ndarray, ...] = attrs.field(
        converter=_readonly_maps, eq=attrs.cmp_using(eq=_maps_eq)
    )
    sequence_maps: tuple[np.ndarray, ...] = attrs.field(
        converter=_readonly_maps, eq=attrs.cmp_using(eq=_maps_eq)
    )
    raw_token_maps: tuple[np.ndarray, ...] = attrs.field(
        default=(), converter=_readonly_maps, eq=attrs.cmp_using(eq=_maps_eq)
    )
    raw_sequence_maps: tuple[np.ndarray, ...] = attrs.field(
        default=(), converter=_readonly_maps, eq=attrs.cmp_using(eq=_maps_eq)
    )
    token_weights: np.ndarray = attrs.field(
        converter=_readonly_float_array, eq=attrs.cmp_using(eq=np.array_equal)
    )
    head_weights: np.ndarray = attrs.field(
        converter=_readonly_float_array, eq=attrs.cmp_using(eq=np.array_equal)
    )
    layers: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    sequence_fallback: bool = False
    minmax_after_upsampling: bool = False
    generated: bool = True
    timings: Mapping[str, float] = attrs.field(factory=dict, converter=plain_copy)
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=plain_copy)
    images: tuple[Image.Image, ...] = attrs.field(
        default=(), converter=_pictures, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        count = len(self.token_ids)
        if len(self.tokens) != count or self.token_weights.shape != (count,):
            raise InputError(
                f"Explanation: {count} token ids but {len(self.tokens)} token strings and "
                f"token_weights of shape {self.token_weights.shape}; they must match."
            )
        if not (len(self.grids) == len(self.token_maps) == len(self.sequence_maps)):
            raise InputError("Explanation: give one token map stack and one sequence map per grid.")
        for grid, tokens, sequence in zip(self.grids, self.token_maps, self.sequence_maps):
            if tokens.shape != (count, *grid.shape) or sequence.shape != grid.shape:
                raise InputError(
                    f"Explanation: grid {grid.name!r} is {grid.shape} but its maps are "
                    f"{tokens.shape} and {sequence.shape}."
                )
        if self.images and [image.size for image in self.images] != list(self.image_sizes):
            raise InputError(
                f"Explanation: the images have sizes {[image.size for image in self.images]} "
                f"but image_sizes is {list(self.image_sizes)}; give one image per size."
            )
        if self.raw_token_maps or self.raw_sequence_maps:
            raw_shapes = [m.shape for m in (*self.raw_token_maps, *self.raw_sequence_maps)]
            normalised_shapes = [m.shape for m in (*self.token_maps, *self.sequence_maps)]
            if raw_shapes != normalised_shapes:
                raise InputError(
                    f"Explanation: the raw maps have shapes {raw_shapes} but the normalised "
                    f"ones {normalised_shapes}; give both per grid, or no raw maps at all."
                )

    @property
    def has_raw_maps(self) -> bool:
        """True when the unnormalised maps were kept (not for files saved before them)."""
        return bool(self.raw_sequence_maps)

    @property
    def sequence_map(self) -> np.ndarray:
        """The sequence map of the only grid (see ``sequence_maps`` for several)."""
        return self._single(self.sequence_maps, "sequence_map")

    @property
    def token_map_stack(self) -> np.ndarray:
        """The ``[T, h, w]`` token maps of the only grid (see ``token_maps`` for several)."""
        return self._single(self.token_maps, "token_map_stack")

    def _single(self, maps: tuple[np.ndarray, ...], name: str) -> np.ndarray:
        if len(maps) != 1:
            names = ", ".join(grid.name for grid in self.grids)
            raise InputError(
                f"Explanation.{name} needs exactly one grid but this explanation has "
                f"{len(maps)} ({names}); index the per-grid tuples instead."
            )
        return maps[0]

    def upsample(self, grid: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Token maps and sequence map of one grid at the original image's resolution.

        The grid's maps are upsampled bilinearly onto its pixel box of the original
        image (zero outside the box, e.g. where the processor cropped), and min-max
        normalised again over the box where :attr:`minmax_after_upsampling` says so.

        Returns:
            ``([T, H, W], [H, W])`` float32 arrays in [0, 1].
        """
        if not 0 <= grid < len(self.grids):
            raise InputError(f"Explanation.upsample: no grid {grid}; it has {len(self.grids)}.")
        box = self.grids[grid].pixel_box
        size = self.image_sizes[self.grids[grid].image_index]
        again = self.minmax_after_upsampling
        tokens = np.stack(
            [paste_to_image(m, box, size, renormalize=again) for m in self.token_maps[grid]]
        )
        if tokens.size == 0:
            tokens = np.zeros((0, size[1], size[0]), np.float32)
        return tokens, paste_to_image(self.sequence_maps[grid], box, size, renormalize=again)

    def plot(
        self,
        image: Image.Image | None = None,
        *,
        kind: str = "sequence",
        grid: int = 0,
        alpha: float | None = None,
        cmap: str | None = None,
        raw: bool = False,
    ) -> Figure:
        """A matplotlib figure of the maps (see :mod:`dexar_core.viz.figures`).

        Args:
            image: the picture to draw on; the one this explanation keeps when None.
            kind: ``"sequence"`` (the image, the sequence map and a colour bar) or
                ``"tokens"`` (every token's map, its weight as a bar).
            grid: which grid's maps.
            alpha: weight of the map's colours (the figures' default when None).
            cmap: a matplotlib colour map name (the figures' default when None).
            raw: draw the unnormalised maps.
        """
        from dexar_core.viz import figures

        draw = {"sequence": figures.sequence_figure, "tokens": figures.tokens_figure}
        if kind not in draw:
            raise InputError(f"Explanation.plot: kind is 'sequence' or 'tokens', got {kind!r}.")
        return draw[kind](self, image, grid=grid, raw=raw, **_drawing(alpha, cmap))

    def to_html(
        self,
        path: str | Path,
        image: Image.Image | None = None,
        *,
        alpha: float | None = None,
        cmap: str | None = None,
    ) -> Path:
        """Write the interactive report: one self-contained HTML file (no network).

        Returns:
            The path written.
        """
        from dexar_core.viz.report import explanation_html, write_html

        return write_html(explanation_html(self, image, **_drawing(alpha, cmap)), path)

    def _repr_html_(self) -> str:
        """The report inline in a notebook (in an iframe, so several do not clash)."""
        from dexar_core.viz.report import explanation_html, notebook_html

        return notebook_html(explanation_html(self))

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.npz`` (arrays) and ``<path>.json`` (everything else).

        Returns:
            The JSON sidecar's path.

        Raises:
            InputError: the files cannot be written there (a file in the way of a folder,
                a folder in the way of a file, no permission, a full disk).
        """
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        try:
            return self._write(base)
        except OSError as error:
            raise InputError(
                f"Explanation.save: could not write {base}.npz and {base}.json "
                f"({error.strerror or error}); give a path in a folder you can write to."
            ) from error

    def _write(self, base: Path) -> Path:
        """Write ``base.npz`` and ``base.json`` (see :meth:`save`); OSError on failure."""
        base.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "token_weights": self.token_weights,
            "head_weights": self.head_weights,
        }
        for index, (tokens, sequence) in enumerate(zip(self.token_maps, self.sequence_maps)):
            arrays[f"token_maps_{index}"] = tokens
            arrays[f"sequence_map_{index}"] = sequence
        for index, (tokens, sequence) in enumerate(
            zip(self.raw_token_maps, self.raw_sequence_maps)
        ):
            arrays[f"raw_token_maps_{index}"] = tokens
            arrays[f"raw_sequence_map_{index}"] = sequence
        for index, image in enumerate(self.images):
            arrays[f"image_{index}"] = np.asarray(image)
        save_arrays: Any = np.savez_compressed  # numpy's stubs reject **arrays of ndarrays
        save_arrays(base.with_suffix(".npz"), **arrays)
        record = {
            "format_version": FORMAT_VERSION,
            **{
                field.name: getattr(self, field.name)
                for field in attrs.fields(type(self))
                if field.name not in _ARRAY_FIELDS
            },
            "grids": [
                {
                    "name": grid.name,
                    "height": grid.height,
                    "width": grid.width,
                    "positions": grid.positions.tolist(),
                    "pixel_box": list(grid.pixel_box),
                    "image_index": grid.image_index,
                }
                for grid in self.grids
            ],
        }
        sidecar = base.with_suffix(".json")
        sidecar.write_text(json.dumps(plain_copy(record), indent=2))
        return sidecar

    @classmethod
    def load(cls, path: str | Path) -> Explanation:
        """Read an explanation written by :meth:`save` (give either file or the stem)."""
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        sidecar, arrays_path = base.with_suffix(".json"), base.with_suffix(".npz")
        for needed in (sidecar, arrays_path):
            if not needed.is_file():
                raise InputError(
                    f"Explanation.load: {needed} does not exist; an explanation is saved as "
                    "a .json and an .npz file of the same stem."
                )
        try:
            record = json.loads(sidecar.read_text())
        except json.JSONDecodeError as error:
            raise InputError(f"Explanation.load: {sidecar} is not valid JSON: {error}") from error
        if record.pop("format_version", None) != FORMAT_VERSION:
            raise InputError(
                f"Explanation.load: {sidecar} was written by another dexar format version; "
                f"this one reads version {FORMAT_VERSION}."
            )
        with np.load(arrays_path) as arrays:
            count = len(record["grids"])
            token_maps = [arrays[f"token_maps_{i}"] for i in range(count)]
            sequence_maps = [arrays[f"sequence_map_{i}"] for i in range(count)]
            raw_kept = all(f"raw_sequence_map_{i}" in arrays for i in range(count))
            raw_token_maps = (
                [arrays[f"raw_token_maps_{i}"] for i in range(count)] if raw_kept else []
            )
            raw_sequence_maps = (
                [arrays[f"raw_sequence_map_{i}"] for i in range(count)] if raw_kept else []
            )
            token_weights, head_weights = arrays["token_weights"], arrays["head_weights"]
            image_names = [f"image_{i}" for i in range(len(record["image_sizes"]))]
            images = (
                [arrays[name] for name in image_names]
                if all(name in arrays for name in image_names)
                else []
            )
        # files saved before units were recorded: only contrastive adapters said so
        contrastive = record.get("metadata", {}).get("kind") == "contrastive"
        record.setdefault("units", PROMPTS if contrastive else ANSWER_TOKENS)
        record["grids"] = [Grid(**grid) for grid in record["grids"]]
        record["image_sizes"] = [tuple(size) for size in record["image_sizes"]]
        return cls(
            **record,
            token_maps=token_maps,
            sequence_maps=sequence_maps,
            raw_token_maps=raw_token_maps,
            raw_sequence_maps=raw_sequence_maps,
            token_weights=token_weights,
            head_weights=head_weights,
            images=images,
        )
