"""Testing tools for adapter and method authors: hypothesis strategies in ``strategies``.

Import the submodules directly; this package imports nothing so that
``import dexar_plugins`` never needs hypothesis or pytest.
"""
