"""lwcnn-mcu: lightweight CNNs from training to a Cortex-M, bit-exact at every step."""

__version__ = "0.1.0"
