"""Cross-model comparison: the same image and prompt through several models and methods.

:func:`compare` explains one image and prompt with every (model, method) pair and
returns the grid of :class:`~dexar_core.explanation.Explanation` records as a
:class:`Comparison`. A generative model generates its answer once; every method then
explains that same answer text (teacher-forced), so the methods are compared on
identical tokens. A contrastive model (an adapter whose units are prompts, e.g.
open_clip) has no answer: each method explains the image's similarity to the prompt(s).

A method that cannot run on a model's architecture (rollout through a Q-Former, a
decoder baseline on a contrastive encoder) raises a :class:`DexarError`; here that
becomes a :class:`Cell` with the reason instead of the explanation, and the comparison
goes on. Nothing is printed; :mod:`dexar_core.cli.compare` draws and prints.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.errors import DexarError, InputError
from dexar_core.interfaces import PROMPTS

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

    from dexar_core.explanation import Explanation
    from dexar_core.records import LoadedModel
    from dexar_plugins.manager import Catalog

__all__ = [
    "Cell",
    "Comparison",
    "ModelRow",
    "check_model_name",
    "compare",
    "example_inputs",
    "file_stem",
    "generate_answer",
    "is_contrastive",
    "resolution_options",
    "split_names",
]


@attrs.frozen(kw_only=True)
class Cell:
    """One (model, method) pair: its explanation, or why the method could not run.

    Attributes:
        method: the method's name.
        explanation: the explanation, or None when the method could not run.
        reason: the error message when it could not run (None otherwise).
    """

    method: str
    explanation: Explanation | None = None
    reason: str | None = None

    @property
    def supported(self) -> bool:
        """True when the method ran and :attr:`explanation` holds its result."""
        return self.explanation is not None


@attrs.frozen(kw_only=True)
class ModelRow:
    """One model's row of the comparison.

    Attributes:
        model_id: the model as named (embedded name, folder, ``open_clip:...``).
        contrastive: True for an image-text similarity model (no answer).
        answer: the generated answer every method explained ("" for a contrastive
            model, or when the model gave no answer: see ``cells`` for the reason).
        prompts: the prompt(s) the row explains.
        similarities: a contrastive model's cosine similarity per prompt (empty for a
            generative model, or when no method ran).
        cells: one :class:`Cell` per method, in the order the methods were given.
    """

    model_id: str
    contrastive: bool
    answer: str
    prompts: tuple[str, ...]
    similarities: tuple[float, ...]
    cells: tuple[Cell, ...]


@attrs.frozen(kw_only=True)
class Comparison:
    """Every model explained with every method on one image.

    Attributes:
        image: the RGB image every model saw.
        prompts: the prompt(s) given.
        methods: the method names, the columns.
        rows: one :class:`ModelRow` per model, the rows.
    """

    image: Image.Image
    prompts: tuple[str, ...]
    methods: tuple[str, ...]
    rows: tuple[ModelRow, ...]

    def cell(self, model_id: str, method: str) -> Cell:
        """The cell of one model and method.

        Raises:
            InputError: the comparison has no such model or method.
        """
        for row in self.rows:
            if row.model_id == model_id:
                for cell in row.cells:
                    if cell.method == method:
                        return cell
        raise InputError(
            f"this comparison has no cell for model {model_id!r} and method {method!r}; its "
            f"models are {[row.model_id for row in self.rows]} and its methods "
            f"{list(self.methods)}."
        )

    def explanation(self, model_id: str, method: str) -> Explanation | None:
        """The explanation of one model and method; None when the method could not run."""
        return self.cell(model_id, method).explanation

    def plot(self, *, alpha: float | None = None, cmap: str | None = None) -> Figure:
        """The models x methods grid of sequence maps (:mod:`dexar_core.viz.comparison`)."""
        from dexar_core.viz.comparison import comparison_figure

        return comparison_figure(self, **_drawing(alpha, cmap))

    def to_html(
        self, path: str | Path, *, alpha: float | None = None, cmap: str | None = None
    ) -> Path:
        """Write the grid and every cell's interactive report as one self-contained page."""
        from dexar_core.viz.pages import comparison_html
        from dexar_core.viz.report import write_html

        return write_html(comparison_html(self, **_drawing(alpha, cmap)), path)

    def _repr_html_(self) -> str:
        """The comparison page inline in a notebook."""
        from dexar_core.viz.pages import comparison_html
        from dexar_core.viz.report import notebook_html

        return notebook_html(comparison_html(self), height=1200)

    def unsupported(self) -> Iterator[tuple[str, Cell]]:
        """``(model_id, cell)`` for every cell whose method could not run."""
        for row in self.rows:
            for cell in row.cells:
                if not cell.supported:
                    yield row.model_id, cell


def split_names(text: str, what: str) -> list[str]:
    """``"a,b"`` as ``["a", "b"]``: stripped, no blanks, no duplicates.

    Raises:
        InputError: for an empty list or a name given twice.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InputError(f"--{what} is empty; give one or more names separated by commas.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"--{what} names {repeated} more than once; give each name once.")
    return names


def file_stem(model_id: str) -> str:
    """A file-name-safe stem for a model name (``open_clip:/a/b`` -> ``open_clip_a_b``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_.") or "model"


def _drawing(alpha: float | None, cmap: str | None) -> dict[str, Any]:
    """The drawing options given, so that the figures' own defaults hold for the rest."""
    return {name: value for name, value in (("alpha", alpha), ("cmap", cmap)) if value is not None}


def check_model_name(
    name: str,
    catalog: Catalog | None = None,
    *,
    revision: str | None = None,
    download: bool = False,
) -> None:
    """Refuse, before any model loads, a model name that cannot name a model.

    A name is accepted when it is an embedded model, ``<adapter>:<spec>`` for an installed
    adapter, an existing folder, or a hub id in the local cache (or any hub id when
    ``download`` is allowed); see :func:`dexar_core.hf.checkpoints.resolve_checkpoint`.

    Raises:
        InputError: naming the model, the nearest embedded name, and what is accepted.
        CheckpointError: a path-like name that names no folder.
    """
    from dexar_core.hf.checkpoints import resolve_checkpoint

    plugins = _catalog(catalog)
    prefix, separator, _ = name.partition(":")
    if name in plugins.embedded_models or (separator and prefix in plugins.adapters):
        return
    resolve_checkpoint(
        name, revision=revision, download=download, embedded_names=plugins.embedded_models
    )


def example_inputs(model: str, catalog: Catalog | None = None) -> tuple[Path, str]:
    """The example image and prompt an embedded model's plugin ships with it.

    Raises:
        InputError: the model is not embedded, or its spec gives no example image or
            no example prompt.
    """
    plugins = _catalog(catalog)
    if model not in plugins.embedded_models:
        raise InputError(
            f"--image and --prompt default to an embedded model's bundled example, but "
            f"{model!r} is not an embedded model; give --image and --prompt."
        )
    spec = plugins.embedded_model(model)
    if spec.example_image is None or not spec.example_prompt:
        raise InputError(
            f"the embedded model {model!r} ships no example image and prompt (its "
            "EmbeddedModelSpec gives none); give --image and --prompt."
        )
    return spec.example_image, spec.example_prompt


def is_contrastive(loaded: LoadedModel) -> bool:
    """True when the model's units are prompts (image-text similarity, no answer)."""
    return bool(loaded.adapter.units == PROMPTS)


def compare(
    models: Sequence[str | LoadedModel],
    methods: Sequence[str],
    image: Any = None,
    prompt: str | Sequence[str] | None = None,
    *,
    max_new_tokens: int = 32,
    layers: Any = None,
    device: str | None = None,
    dtype: Any = None,
    load_options: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> Comparison:
    """Explain one image and prompt with every model and every method.

    Models are loaded (when given by name) and explained one at a time, so only one is
    in memory at once.

    Args:
        models: embedded names, checkpoint folders, ``<adapter>:<spec>`` names (e.g.
            ``open_clip:ViT-B-32:/path/weights.pt``) or already loaded models.
        methods: registered method names (``dexar plugins``), e.g. ``["dexar", "rollout"]``.
        image: a path, PIL image or array; None takes the first model's bundled example.
        prompt: the prompt, or several prompts (contrastive models only: one map per
            prompt); None takes the first model's example prompt.
        max_new_tokens: the longest generated answer.
        layers: passed to every method as its ``layers`` option when given.
        device: where to load named models.
        dtype: the dtype of named models (see :func:`dexar_core.api.load`).
        load_options: further :func:`dexar_core.api.load` options (``device_map``,
            ``revision``, ``generation``, ...).
        catalog: the plugin catalog; the process-wide one by default.

    Returns:
        The :class:`Comparison`; a method that cannot run on a model is a cell with the
        reason, not an error.

    Raises:
        InputError: no model or method, an unknown model or method name, no image and
            no example, an empty prompt, or several prompts for a generative model.
    """
    from dexar_core.api import load
    from dexar_core.images import load_image

    plugins = _catalog(catalog)
    if not models or not methods:
        raise InputError("compare needs at least one model and one method.")
    model_ids = [model if isinstance(model, str) else model.model_id for model in models]
    for what, names in (("models", model_ids), ("methods", list(methods))):
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InputError(
                f"compare: {what} {repeated} are given more than once; give each once."
            )
    for method in methods:
        plugins.method(method)  # an unknown name fails here, naming the installed methods
    for model in models:
        if isinstance(model, str):
            check_model_name(model, plugins, **resolution_options(load_options))
    _check_max_new_tokens(max_new_tokens)
    first = model_ids[0]
    if image is None or prompt is None:
        example_image, example_prompt = example_inputs(first, plugins)
        image = example_image if image is None else image
        prompt = example_prompt if prompt is None else prompt
    prompts = _prompt_list(prompt)
    if len(prompts) > 1:
        for model in models:
            if isinstance(model, str) and _served_contrastive(model, plugins) is False:
                raise _several_prompts_error(model, len(prompts))
    picture = load_image(image)
    options = {} if layers is None else {"layers": layers}
    rows = []
    for model in models:
        loaded = (
            load(model, device=device, dtype=dtype, catalog=plugins, **(load_options or {}))
            if isinstance(model, str)
            else model
        )
        rows.append(_explain_row(loaded, picture, prompts, methods, max_new_tokens, options))
        del loaded  # a named model is freed before the next one loads
    return Comparison(image=picture, prompts=prompts, methods=tuple(methods), rows=tuple(rows))


def _explain_row(
    loaded: LoadedModel,
    picture: Image.Image,
    prompts: tuple[str, ...],
    methods: Sequence[str],
    max_new_tokens: int,
    options: dict[str, Any],
) -> ModelRow:
    from dexar_core.api import explain

    contrastive = is_contrastive(loaded)
    if not contrastive and len(prompts) != 1:
        raise _several_prompts_error(loaded.model_id, len(prompts))
    prompt: str | list[str] = list(prompts) if contrastive else prompts[0]
    answer: str | None = None
    if not contrastive:
        try:
            answer = generate_answer(loaded, picture, prompts[0], max_new_tokens)
        except DexarError as error:
            reason = f"no answer to explain: {error}"
            return ModelRow(
                model_id=loaded.model_id,
                contrastive=False,
                answer="",
                prompts=prompts,
                similarities=(),
                cells=tuple(Cell(method=method, reason=reason) for method in methods),
            )
    cells = [
        _cell(
            method,
            partial(explain, loaded, picture, prompt, answer=answer, method=method, **options),
        )
        for method in methods
    ]
    similarities = next(
        (cell.explanation.metadata.get("similarities", ()) for cell in cells if cell.explanation),
        (),
    )
    return ModelRow(
        model_id=loaded.model_id,
        contrastive=contrastive,
        answer=answer or "",
        prompts=prompts,
        similarities=tuple(float(value) for value in similarities),
        cells=tuple(cells),
    )


def generate_answer(loaded: LoadedModel, image: Any, prompt: str, max_new_tokens: int) -> str:
    """The model's free-run (greedy) answer text, generated once.

    Raises:
        InputError: a bad ``max_new_tokens``, or the model stopped at once (empty answer).
    """
    from dexar_core.images import load_image

    _check_max_new_tokens(max_new_tokens)
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [load_image(image)], prompt)
    units = adapter.explained_units(loaded, prepared, answer=None, max_new_tokens=max_new_tokens)
    answer = str(units.answer)
    if not answer.strip():
        raise InputError(
            f"{loaded.model_id!r} gave an empty answer (it stopped at once); change the prompt."
        )
    return answer


def _check_max_new_tokens(max_new_tokens: Any) -> None:
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise InputError(f"max_new_tokens must be an int of at least 1, got {max_new_tokens!r}.")


def _several_prompts_error(model_id: str, count: int) -> InputError:
    return InputError(
        f"{model_id!r} is a generative model: it answers one prompt, got {count}. Several "
        "prompts (one map each) apply to contrastive models, which score captions; compare "
        "a generative model with one prompt."
    )


def _served_contrastive(name: str, catalog: Catalog) -> bool | None:
    """Whether the adapter a name designates explains prompts (None: only loading tells)."""
    prefix, separator, _ = name.partition(":")
    if name in catalog.embedded_models:
        adapter_name = catalog.embedded_model(name).adapter
    elif separator and prefix in catalog.adapters:
        adapter_name = prefix
    else:
        return None
    return bool(catalog.adapter(adapter_name).factory().units == PROMPTS)


def _cell(method: str, run: Callable[[], Explanation]) -> Cell:
    """Run one method; a DexarError (the method cannot run here) becomes the reason."""
    try:
        return Cell(method=method, explanation=run())
    except DexarError as error:
        return Cell(method=method, reason=str(error))


def _prompt_list(prompt: str | Sequence[str]) -> tuple[str, ...]:
    prompts = (prompt,) if isinstance(prompt, str) else tuple(prompt)
    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise InputError(
            f"every prompt must be non-empty text, got {list(prompts)!r}; give --prompt TEXT."
        )
    return prompts


def resolution_options(load_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Of the loading options, those that decide whether a model name resolves."""
    options = load_options or {}
    return {key: options[key] for key in ("revision", "download") if key in options}


def _catalog(catalog: Catalog | None) -> Catalog:
    from dexar_plugins.manager import default_catalog

    return default_catalog() if catalog is None else catalog
