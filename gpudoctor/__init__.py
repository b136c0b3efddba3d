"""gpudoctor: diagnose and fix NVIDIA GPUs inside containers, layer by layer."""

__version__ = "0.1.0"
