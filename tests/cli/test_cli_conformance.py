"""``dexar plugins --check NAME`` runs the conformance suite on an installed adapter."""

from __future__ import annotations

from dexar_core.cli.main import main

CROPPED_PLUGIN = """
    from dexar_core.values import AdapterSpec
    from dexar_plugins import hookimpl
    from broken_adapters import CroppedGridAdapter, subject_for


    class Cropped(CroppedGridAdapter):
        name = "cropped"


    def case():
        return subject_for(Cropped).case


    @hookimpl
    def dexar_adapters():
        return [
            AdapterSpec(
                name="cropped",
                model_types=("llava",),
                factory=Cropped,
                priority=5,
                conformance=case,
            )
        ]
"""


def test_check_prints_a_table_and_fails_on_a_broken_adapter(fake_site, capsys):
    fake_site.add_plugin("cropped", CROPPED_PLUGIN, distribution="dexar-cropped")
    code = main(["plugins", "--check", "cropped"])
    out = capsys.readouterr().out
    assert code == 1
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:10]}
    assert rows["grids_cover_visual_positions"] == "failed"
    assert rows["entry_point_loads"] == rows["gradients_equal_reference"] == "passed"
    assert "conformance check 'grids_cover_visual_positions' failed" in out
    assert "adapter 'cropped' fails the conformance suite (1 failed)" in out


def test_check_needs_the_spec_to_say_how_to_build_a_tiny_model(fake_site, capsys):
    fake_site.add_adapter_plugin("bare", adapter="bare", distribution="dexar-bare")
    code = main(["plugins", "--check", "bare", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert "has no conformance factory" in captured.err


def test_check_of_an_unknown_adapter_names_the_installed_ones(fake_site, capsys):
    code = main(["plugins", "--check", "nonesuch"])
    assert code == 2
    assert "llava" in capsys.readouterr().err
