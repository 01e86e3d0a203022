"""Testing tools for adapter and method authors.

``conformance``: the adapter conformance suite (``AdapterConformance``, ``run_checks``);
``declared``: the conformance case a plugin manifest declares as data;
``reference``: the straightforward gradients the engine must match; ``strategies``:
hypothesis strategies; ``pytest_plugin``: the suite's pytest marker.

Import the submodules directly; this package imports nothing so that
``import dexar_plugins`` never needs torch, hypothesis or pytest.
"""
