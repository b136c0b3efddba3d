"""The report model and its renderings (text, JSON). Nothing here probes the host."""
