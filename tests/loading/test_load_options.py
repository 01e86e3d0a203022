"""Loading options reach from_pretrained, and impossible ones fail before any weight loads."""

from __future__ import annotations

import pytest
import torch
from llava_fixtures import noise_image

import dexar_core
from dexar_core.cli.main import main
from dexar_core.errors import InputError
from dexar_core.hf import load_options as checks
from dexar_core.validation import check_device


def test_an_unknown_device_string_is_an_input_error():
    with pytest.raises(InputError, match="'gpu' is not a device"):
        check_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_an_input_error_before_loading(capsys):
    code = main(["explain", "--model", "shapes-llava", "--example", "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no CUDA GPU" in err and "--device cpu" in err


def test_a_cuda_index_past_the_last_device_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(InputError, match=r"has 2 CUDA GPU\(s\), cuda:0..cuda:1"):
        check_device("cuda:5")


def test_device_and_device_map_together_are_refused():
    with pytest.raises(InputError, match="not both"):
        checks.from_pretrained_options(device="cpu", device_map="auto")


@pytest.mark.parametrize("option", [{"max_memory": {0: "1GiB"}}, {"offload_folder": "off"}])
def test_placement_limits_need_a_device_map(option):
    with pytest.raises(InputError, match="device_map='auto'"):
        checks.from_pretrained_options(device=None, **option)


def test_max_memory_is_parsed_into_accelerates_dict():
    assert checks.parse_max_memory("0=20GiB, cpu=60GiB") == {0: "20GiB", "cpu": "60GiB"}
    with pytest.raises(InputError, match="DEVICE=AMOUNT"):
        checks.parse_max_memory("20GiB")


def test_an_unknown_attention_implementation_lists_the_known_ones():
    with pytest.raises(InputError, match="'sdpa'"):
        checks.from_pretrained_options(device=None, attn_implementation="fast")


def test_trust_remote_code_is_off_unless_asked_and_warns_when_on():
    assert "trust_remote_code" not in checks.from_pretrained_options(device=None)
    with pytest.warns(UserWarning, match="checkpoint's own Python code"):
        options = checks.from_pretrained_options(device=None, trust_remote_code=True)
    assert options["trust_remote_code"] is True


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("bitsandbytes") is not None,
    reason="bitsandbytes is installed",
)
def test_quantization_without_bitsandbytes_says_what_to_install():
    with pytest.raises(InputError, match="pip install bitsandbytes"):
        checks.from_pretrained_options(device=None, quantization="4bit")


@pytest.fixture
def from_pretrained_calls(monkeypatch):
    """The keyword arguments of every LLaVA ``from_pretrained`` call (which still runs)."""
    from transformers import LlavaForConditionalGeneration

    calls: list[dict] = []
    original = LlavaForConditionalGeneration.from_pretrained.__func__

    def recording(cls, path, **kwargs):
        calls.append(kwargs)
        return original(cls, path, **kwargs)

    monkeypatch.setattr(LlavaForConditionalGeneration, "from_pretrained", classmethod(recording))
    return calls


def test_attn_implementation_reaches_the_model_and_the_metadata(from_pretrained_calls):
    loaded = dexar_core.load("shapes-llava", attn_implementation="eager")
    assert from_pretrained_calls[-1]["attn_implementation"] == "eager"
    assert loaded.model.config._attn_implementation == "eager"
    explanation = dexar_core.explain(loaded, noise_image(), "what color?", answer="red")
    assert explanation.metadata["attn_implementation"] == "eager"


def test_accelerate_placement_options_reach_from_pretrained(from_pretrained_calls, tmp_path):
    limits = {"cpu": "2GiB"}
    loaded = dexar_core.load(
        "shapes-llava", device_map="auto", max_memory=limits, offload_folder=tmp_path
    )
    kwargs = from_pretrained_calls[-1]
    assert kwargs["device_map"] == "auto"
    assert kwargs["max_memory"] in ({"cpu": "2GiB"}, {"cpu": 2 * 1024**3})  # accelerate parses it
    assert limits == {"cpu": "2GiB"}  # the caller's dict is not rewritten
    assert kwargs["offload_folder"] == str(tmp_path)
    assert loaded.model.device.type == "cpu"


def test_a_revision_is_refused_for_an_embedded_model():
    with pytest.raises(InputError, match="revision applies to hub ids"):
        dexar_core.load("shapes-llava", revision="main")


def test_an_adapter_without_loading_options_refuses_them_by_name():
    with pytest.raises(InputError, match=r"open_clip adapter does not take .*attn_implementation"):
        dexar_core.load("shapes-clip", attn_implementation="eager")


def test_the_cli_passes_the_loading_flags(capsys, tmp_path):
    code = main(
        [
            "explain",
            "--model",
            "shapes-llava",
            "--example",
            "--attn-implementation",
            "eager",
            "--answer",
            "red",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    record = dexar_core.Explanation.load(tmp_path / "explanation")
    assert record.metadata["attn_implementation"] == "eager"
