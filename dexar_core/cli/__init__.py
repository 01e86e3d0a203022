"""The ``dexar`` command line: the entry point (:mod:`.main`), one module per subcommand."""
