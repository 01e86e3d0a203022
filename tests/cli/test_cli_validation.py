"""Every mistake in a command is an exit-2, one-line error before the model loads."""

from __future__ import annotations

import pytest
import torch
from command_errors import command_error, refuse_model_loads
from PIL import Image

from dexar_core.cli import main as cli
from dexar_core.errors import MethodError
from dexar_core.validation import check_device, check_method_options, check_output_folder


@pytest.fixture(autouse=True)
def no_model_load(monkeypatch):
    """Every case here must be refused before a model is loaded."""
    refuse_model_loads(monkeypatch)


def error_of(capsys, *argv):
    err = command_error(capsys, *argv)
    assert err.startswith("dexar: error: "), err  # the one line, nothing before it
    return err


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.png"
    Image.new("RGB", (8, 8)).save(path)
    return str(path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--option", "topk=abc"], "topk must be a whole number, got 'abc'"),
        (["--option", "nope=1"], "has no option 'nope'; its options are head_agg, head_weighting"),
        (["--option", "layers=3.0"], "layers must be 'all', an int k >= 1"),
        (["--option", "layers=0"], "0 (k must be at least 1)"),
        (["--option", "normalize_tokens=1"], "normalize_tokens must be true or false"),
        (["--option", "head_agg=median"], "head_agg must be one of"),
        (["--option", "=3"], "has no key"),
        (["--option", "topk"], "expects key=value"),
        (["--option", "topk=1", "--option", "topk=2"], "topk is given twice"),
        (["--option", "layers=2", "--layers", "3"], "--layers 3 and --option layers=2 conflict"),
        (["--method", "nope"], "No method named 'nope'"),
        (["--max-new-tokens", "0"], "must be a whole number of at least 1, got 0"),
        (["--chunk-size", "0"], "--chunk-size must be at least 1"),
        (["--device", "tpu"], "'tpu' is not a device"),
        (["--device", "meta"], "runs on cpu, cuda, mps, not meta"),
        (["--device", "banana"], "'banana' is not a device"),
    ],
)
def test_explain_refuses_before_loading(capsys, tmp_path, image, arguments, message):
    out = str(tmp_path / "out")
    err = error_of(capsys, "explain", "--image", image, "--prompt", "q", "--out", out, *arguments)

    assert message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_missing_cuda_device_is_named(capsys, image, tmp_path):
    err = error_of(
        capsys, "explain", "--image", image, "--prompt", "q", "--device", "cuda", "--out",
        str(tmp_path / "o"),
    )  # fmt: skip

    assert "no CUDA GPU that torch can use; give --device cpu" in err


def test_several_images_for_explain_are_refused(capsys, image, tmp_path):
    err = error_of(capsys, "explain", "--image", image, "--image", image, "--prompt", "q")

    assert "takes one --image, got 2" in err


def test_an_output_that_is_a_file_or_under_one_is_refused(capsys, image, tmp_path):
    existing = tmp_path / "file.txt"
    existing.write_text("x")

    err = error_of(capsys, "explain", "--image", image, "--prompt", "q", "--out", str(existing))
    assert "is an existing file" in err
    err = error_of(
        capsys, "explain", "--image", image, "--prompt", "q", "--out", str(existing / "sub")
    )
    assert "lies under the file" in err


def test_an_unreadable_image_and_a_gif_without_frame_are_refused(capsys, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (4, 4), colour) for colour in ("red", "blue")]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    out = str(tmp_path / "out")

    assert "could not be read" in error_of(
        capsys, "explain", "--image", str(broken), "--prompt", "q", "--out", out
    )
    assert "has 2 frames" in error_of(
        capsys, "explain", "--image", str(gif), "--prompt", "q", "--out", out
    )
    assert "frame must be 0..1, got 5" in error_of(
        capsys, "explain", "--image", str(gif), "--prompt", "q", "--frame", "5", "--out", out
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--option", "topk=abc"], "topk must be a whole number"),
        (["--methods", "dexar,attention", "--option", "topk=3"], "'attention' has no option"),
        (["--option", "dexar.topk=2", "--option", "dexar.topk=3"], "given twice"),
        (["--max-new-tokens", "0"], "at least 1, got 0"),
        (["--device", "mps"], "MPS is not available"),
        (["--dataset", "voc"], "cannot read dataset 'voc'"),
        (["--dataset", "coco:/data"], "cannot read dataset 'coco:/data'"),
        (["--metrics", "segmentation,saliency"], "unknown metric 'saliency'"),
        (["--methods", "dexar,gradcam"], "No method named 'gradcam'"),
        (["--split", "dev"], "no split 'dev'"),
        (["--limit", "0"], "--limit must be a positive number"),
    ],
)
def test_evaluate_refuses_before_loading(capsys, tmp_path, arguments, message):
    if "mps" in arguments and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    err = error_of(capsys, "evaluate", "--out", str(tmp_path / "o"), *arguments)

    assert message in err


def test_a_prefixed_option_overrides_the_unprefixed_one_for_its_method(capsys, tmp_path):
    err = error_of(
        capsys, "evaluate", "--methods", "dexar,tam", "--option", "dexar.layers=2",
        "--option", "layers=0", "--out", str(tmp_path / "o"),
    )  # fmt: skip

    assert "method 'tam'" in err  # dexar kept its layers=2; tam got layers=0


def test_the_traceback_flag_works_after_the_subcommand(monkeypatch):
    def crash(args):
        raise RuntimeError("boom")

    subcommand = cli.Subcommand(run=crash, help="crash")
    monkeypatch.setitem(cli.SUBCOMMANDS, "crash", subcommand)

    with pytest.raises(RuntimeError):
        cli.main(["crash", "--traceback"])


def test_an_error_raised_in_a_plugin_names_the_plugin(fake_site, capsys, monkeypatch):
    module = fake_site.add_plugin(
        "buggy", "def crash(args):\n    raise KeyError('grid')\n", distribution="dexar-buggy"
    )
    crash = __import__(module).crash
    monkeypatch.setitem(cli.SUBCOMMANDS, "crash", cli.Subcommand(run=crash, help="crash"))

    assert cli.main(["crash"]) == 3
    err = capsys.readouterr().err
    assert "This is a bug in plugin 'buggy' (dexar-buggy 1.0, in fake_dexar_buggy)" in err


def test_the_validation_functions_raise_dexar_errors(tmp_path):
    with pytest.raises(MethodError, match="kernel_size must be a whole number"):
        check_method_options("tam", {"kernel_size": 2.5})
    with pytest.raises(MethodError, match="positive odd int"):
        check_method_options("tam", {"kernel_size": 2})
    assert check_method_options("dexar", {"layers": [0, 1], "topk": 2}).topk == 2
    assert check_output_folder(tmp_path / "new" / "folder") == tmp_path / "new" / "folder"
    check_device("cpu")
    check_device(None)


def test_plugins_lists_overlapping_adapters_and_exits_0(fake_site, capsys):
    fake_site.add_adapter_plugin("one", adapter="first", distribution="dexar-one")
    fake_site.add_adapter_plugin("two", adapter="second", distribution="dexar-two")

    code = cli.main(["plugins"])

    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert ["first", "adapter", "dexar-one", "1.0", "overlaps", "fakevlm"] in rows
    assert ["second", "adapter", "dexar-two", "1.0", "overlaps", "fakevlm"] in rows
    assert (
        "- model type 'fakevlm' is served by adapter 'first' from dexar-one 1.0 (priority 0) "
        "and adapter 'second' from dexar-two 1.0 (priority 0); 'first' is chosen because the "
        "priorities tie at 0 and 'first' sorts before 'second'."
    ) in out
