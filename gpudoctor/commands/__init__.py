"""Subcommands (`gpudoctor cdi|hook|fix|install|snapshot ...`). Each module exposes ``main(argv) -> int``."""
