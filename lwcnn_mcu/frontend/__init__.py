"""Frontends: a .keras model is quantized to an int8 .tflite; an int8 .tflite is read into the IR."""
