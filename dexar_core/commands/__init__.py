"""The heavier ``dexar`` subcommands, one module each; ``dexar_core.cli`` registers them."""
