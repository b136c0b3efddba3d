"""The machine being diagnosed: a root directory, parsers of its files, and live probes."""
