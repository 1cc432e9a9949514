"""One row per op configuration: a small random-weight Keras model, compiled, run as host C and
compared byte for byte with TFLite Micro (also under AddressSanitizer/UBSan). Ops the Keras
converter never writes (SLICE, SQUEEZE, EXPAND_DIMS, STRIDED_SLICE with shrink masks or negative
indices) have rows in TFLITE_CASES: TensorFlow functions converted to int8 .tflite directly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lwcnn_mcu import backend, compiler, hostrun, reference
from tests.conftest import compile_keras, random_inputs, randomize


def _m(keras, shape, *layers):  # noqa: ANN001, ANN202
    inp = keras.Input(shape)
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x)


def _two(keras, shape, merge, act=None):  # noqa: ANN001, ANN202
    L = keras.layers
    inp = keras.Input(shape)
    a = L.Conv2D(6, 3, padding="same")(inp)
    b = L.Conv2D(6, 1, padding="same", activation="relu")(inp)
    x = merge()([a, b])
    if act:
        x = L.ReLU(act if act is not True else None)(x)
    return keras.Model(inp, x)


def _act_after_add(keras, shape, *acts):  # noqa: ANN001, ANN202
    """Activations that cannot be fused into the op before them (an ADD of two branches)."""
    L = keras.layers
    inp = keras.Input(shape)
    x = L.Add()([L.Conv2D(6, 3, padding="same")(inp), L.Conv2D(6, 1)(inp)])
    for act in acts:
        x = L.Activation(act)(x)
    return keras.Model(inp, x)
def _unet(keras, shape, up, out_act=None):  # noqa: ANN001, ANN202
    """A tiny U-Net: conv, max pool, conv, upsampling (UpSampling2D, or a stride-2 Conv2DTranspose),
    the skip concatenated, a Conv2DTranspose and a conv with out_act."""
    L = keras.layers
    inp = keras.Input(shape)
    skip = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = L.MaxPooling2D(2)(skip)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.UpSampling2D(2)(x) if up == "upsampling" else L.Conv2DTranspose(8, 2, strides=2, activation="relu")(x)
    x = L.Concatenate()([x, skip])
    x = L.Conv2DTranspose(6, 3, padding="same", activation="relu")(x)
    return keras.Model(inp, L.Conv2D(3, 3, padding="same", activation=out_act)(x))


def _bcast(keras, shape, merge, a, b, n=2):  # noqa: ANN001, ANN202
    """A merge of computed tensors shaped a and b (without the batch): (H, W, C), (1, 1, C) from a global
    average pooling with keepdims, (H, W, 1) from a 1-channel convolution, (C,) from GlobalAveragePooling2D."""
    L = keras.layers
    inp = keras.Input(shape)

    def branch(s, k):  # noqa: ANN001, ANN202
        x = L.Conv2D(s[-1], 3 if k % 2 else 1, padding="same", activation="relu" if k % 2 else None)(inp)
        if len(s) == 1:
            return L.GlobalAveragePooling2D()(x)
        return L.GlobalAveragePooling2D(keepdims=True)(x) if s[:2] == (1, 1) else x

    xs = [branch(s, k) for k, s in enumerate([a, b] + [a] * (n - 2))]
    return keras.Model(inp, merge()(xs))


def _se(keras, shape, dense=False, act="relu6"):  # noqa: ANN001, ANN202
    """Squeeze and excitation: x * gate(x), the gate per channel from the global average."""
    L = keras.layers
    c = shape[-1]
    inp = keras.Input(shape)
    x = L.Conv2D(c, 3, padding="same", activation="relu")(inp)
    if dense:
        s = L.GlobalAveragePooling2D()(x)
        s = L.Dense(c // 4, activation="relu")(s)
        s = L.Reshape((1, 1, c))(L.Dense(c, activation=act)(s))
    else:
        s = L.GlobalAveragePooling2D(keepdims=True)(x)
        s = L.Conv2D(c // 4, 1, activation="relu")(s)
        s = L.Conv2D(c, 1, activation=act)(s)
    y = L.Multiply()([x, s] if not dense else [s, x])
    return keras.Model(inp, L.Conv2D(4, 1)(y))


CASES = {
    "conv3x3_same_s1": lambda k, L: _m(k, (9, 9, 3), L.Conv2D(5, 3, padding="same")),
    "conv3x3_valid_s2": lambda k, L: _m(k, (11, 10, 2), L.Conv2D(4, 3, strides=2, padding="valid")),
    "conv5x3_same_s2x1": lambda k, L: _m(k, (12, 9, 3), L.Conv2D(6, (5, 3), strides=(2, 1), padding="same")),
    "conv4x4_same_s2_even": lambda k, L: _m(k, (10, 10, 3), L.Conv2D(3, 4, strides=2, padding="same")),
    "conv1x1_c8_in_place": lambda k, L: _m(k, (5, 6, 8), L.Conv2D(6, 1, strides=2)),
    "conv1x1_c8_maxpool": lambda k, L: _m(k, (6, 6, 8), L.Conv2D(5, 1), L.MaxPooling2D(2)),
    "conv1x1_widen_over_input": lambda k, L: _m(k, (7, 5, 3), L.Conv2D(8, 3, padding="same"),
                                                L.Conv2D(20, 1, activation="relu"), L.Conv2D(4, 3, padding="same")),
    "conv1x1_narrow_over_input": lambda k, L: _m(k, (6, 7, 2), L.Conv2D(16, 3, padding="same"), L.Conv2D(4, 1),
                                                 L.Conv2D(3, 3, padding="same")),
    "conv1x1_pw16_c12_s2": lambda k, L: _m(k, (7, 8, 12), L.Conv2D(9, 1, strides=2, activation="relu")),
    "conv1x1_pw16_c40_chunks": lambda k, L: _m(k, (4, 5, 40), L.Conv2D(11, 1, activation="relu")),
    "conv3x3_c1_s2_small_patch": lambda k, L: _m(k, (11, 10, 1), L.Conv2D(7, 3, strides=2, padding="same")),
    "conv1x1_relu": lambda k, L: _m(k, (6, 7, 5), L.Conv2D(7, 1, activation="relu")),
    "conv_relu6_c1": lambda k, L: _m(k, (8, 8, 1), L.Conv2D(3, 3, padding="same", activation="relu6")),
    "conv_dilation2": lambda k, L: _m(k, (10, 10, 2), L.Conv2D(4, 3, dilation_rate=2, padding="same")),
    "conv_nobias_bn_relu": lambda k, L: _m(k, (8, 8, 3), L.Conv2D(5, 3, padding="same", use_bias=False),
                                            L.BatchNormalization(), L.ReLU()),
    "dwconv3x3_same": lambda k, L: _m(k, (10, 10, 6), L.DepthwiseConv2D(3, padding="same")),
    "dwconv_s2_valid_mult2": lambda k, L: _m(k, (11, 11, 3), L.DepthwiseConv2D(3, strides=2, padding="valid",
                                                                                depth_multiplier=2)),
    "dwconv3x3_c8_pairs": lambda k, L: _m(k, (9, 12, 8), L.DepthwiseConv2D(3, padding="same")),
    "dwconv3x3_c12_s2_relu": lambda k, L: _m(k, (11, 13, 12), L.DepthwiseConv2D(3, strides=2, padding="same",
                                                                                activation="relu")),
    "dwconv3x3_c4_dil2_valid": lambda k, L: _m(k, (10, 11, 4), L.DepthwiseConv2D(3, dilation_rate=2)),
    # dw_rows: an odd row (the last pixel alone) between 1x1 convolutions (its output may overlap its input),
    # 2 and 1 kernel rows, a wide kernel
    "dwconv3x3_c8_rows_over_input": lambda k, L: _m(k, (7, 5, 3), L.Conv2D(8, 1),
                                                    L.DepthwiseConv2D(3, padding="same", activation="relu"),
                                                    L.Conv2D(4, 1)),
    "dwconv2x3_c4_rows_s2": lambda k, L: _m(k, (9, 10, 4), L.DepthwiseConv2D((2, 3), strides=2, padding="same")),
    "dwconv1x3_c4_rows_valid": lambda k, L: _m(k, (5, 9, 4), L.DepthwiseConv2D((1, 3))),
    "dwconv3x5_c8_rows": lambda k, L: _m(k, (6, 9, 8), L.DepthwiseConv2D((3, 5), padding="same")),
    "conv3x3_c8_odd_oc": lambda k, L: _m(k, (7, 9, 8), L.Conv2D(7, 3, padding="same", activation="relu")),
    # a convolution writing its output over its dying input (backend.conv_overlap), on each path: in place
    # (odd width: pixel pairs across rows, a lone last pixel), stride 2 and widening, gathered patches,
    # pw16 on a gathered patch, dilated, narrowing; a 1x1 convolution after it keeps its output in the arena
    "conv3x3_c8_over_input": lambda k, L: _m(k, (7, 9, 8), L.Conv2D(8, 1), L.Conv2D(8, 3, padding="same"),
                                              L.Conv2D(3, 1)),
    "conv3x3_s2_widen_over_input": lambda k, L: _m(k, (9, 8, 4), L.Conv2D(4, 1), L.Conv2D(12, 3, strides=2,
                                                                                           padding="same"),
                                                   L.Conv2D(3, 1)),
    "conv3x3_c3_gathered_over_input": lambda k, L: _m(k, (6, 7, 2), L.Conv2D(3, 1), L.Conv2D(5, 3, padding="same"),
                                                      L.Conv2D(2, 1)),
    "conv3x3_c1_pw16_over_input": lambda k, L: _m(k, (8, 7, 3), L.Conv2D(1, 1), L.Conv2D(6, 3, padding="same"),
                                                  L.Conv2D(2, 1)),
    "conv3x3_dil2_valid_over_input": lambda k, L: _m(k, (10, 9, 4), L.Conv2D(4, 1), L.Conv2D(6, 3, dilation_rate=2),
                                                     L.Conv2D(2, 1)),
    "conv3x3_narrow_over_input": lambda k, L: _m(k, (8, 8, 16), L.Conv2D(16, 1), L.Conv2D(4, 3, padding="same"),
                                                 L.Conv2D(2, 1)),
    # 4k channels but more taps than LW_CONV_MAX_TAPS: gathered patches, not read in place
    "conv7x7_c4_many_taps": lambda k, L: _m(k, (9, 8, 4), L.Conv2D(6, 7, padding="same")),
    "dwconv3x5_relu": lambda k, L: _m(k, (8, 12, 5), L.DepthwiseConv2D((3, 5), padding="same", activation="relu")),
    "separable_relu": lambda k, L: _m(k, (10, 10, 3), L.SeparableConv2D(8, 3, padding="same", activation="relu")),
    "dense_flatten": lambda k, L: _m(k, (5, 5, 3), L.Flatten(), L.Dense(7)),
    "dense_relu_nobias_2d": lambda k, L: _m(k, (20,), L.Dense(9, activation="relu", use_bias=False)),
    "dense_softmax": lambda k, L: _m(k, (4, 4, 2), L.Flatten(), L.Dense(10, activation="softmax")),
    "softmax_layer": lambda k, L: _m(k, (6, 6, 2), L.Flatten(), L.Dense(13), L.Softmax()),
    "maxpool2": lambda k, L: _m(k, (8, 8, 3), L.Conv2D(4, 3), L.MaxPooling2D(2)),
    "conv_maxpool3_s2_same": lambda k, L: _m(k, (11, 11, 3), L.Conv2D(5, 3, padding="same", activation="relu"),
                                             L.MaxPooling2D(3, strides=2, padding="same")),
    "conv_valid_maxpool_drops_edge": lambda k, L: _m(k, (9, 9, 2), L.Conv2D(4, 3), L.MaxPooling2D(2)),
    "conv_s2_avgpool3_same": lambda k, L: _m(k, (13, 12, 3), L.Conv2D(6, 3, strides=2, padding="same"),
                                             L.AveragePooling2D(3, strides=2, padding="same")),
    "maxpool3_s2_same": lambda k, L: _m(k, (9, 9, 4), L.MaxPooling2D(3, strides=2, padding="same")),
    "avgpool2": lambda k, L: _m(k, (8, 6, 3), L.Conv2D(4, 3, padding="same"), L.AveragePooling2D(2)),
    "avgpool3_s2_same": lambda k, L: _m(k, (9, 7, 3), L.AveragePooling2D(3, strides=2, padding="same")),
    "global_avg": lambda k, L: _m(k, (7, 7, 5), L.Conv2D(6, 3, padding="same"), L.GlobalAveragePooling2D()),
    "global_max": lambda k, L: _m(k, (7, 5, 5), L.Conv2D(6, 3, padding="same"), L.GlobalMaxPooling2D()),
    "add": lambda k, L: _two(k, (8, 8, 3), L.Add),
    "add_relu": lambda k, L: _two(k, (8, 8, 3), L.Add, act=True),
    "concat": lambda k, L: _two(k, (7, 9, 3), L.Concatenate),
    "add_lut_relu": lambda k, L: _two(k, (8, 8, 4), L.Add, act=True),  # 384 elements: ADD_LUT_MIN and up
    "sub_lut": lambda k, L: _two(k, (9, 8, 3), L.Subtract),
    "sub_bcast_lut": lambda k, L: _bcast(k, (8, 8, 5), L.Subtract, (8, 8, 5), (8, 8, 1)),
    "sub": lambda k, L: _two(k, (8, 7, 3), L.Subtract),
    "sub_relu": lambda k, L: _two(k, (6, 7, 3), L.Subtract, act=True),
    "sub_bcast_first": lambda k, L: _bcast(k, (6, 5, 4), L.Subtract, (1, 1, 4), (6, 5, 4)),
    "sub_bcast_second": lambda k, L: _bcast(k, (5, 6, 3), L.Subtract, (5, 6, 3), (5, 6, 1)),
    "add_bcast_c_hwc": lambda k, L: _bcast(k, (6, 5, 8), L.Add, (1, 1, 8), (6, 5, 8)),
    "add_bcast_hwc_c": lambda k, L: _bcast(k, (6, 5, 8), L.Add, (6, 5, 8), (1, 1, 8)),
    "add_bcast_hw1": lambda k, L: _bcast(k, (5, 7, 4), L.Add, (5, 7, 1), (5, 7, 4)),
    "add_bcast_vector_3": lambda k, L: _bcast(k, (4, 6, 5), L.Add, (5,), (4, 6, 5), n=3),
    "mul": lambda k, L: _two(k, (7, 6, 3), L.Multiply),
    "mul_relu": lambda k, L: _two(k, (6, 5, 3), L.Multiply, act=True),
    "mul_bcast_c_hwc": lambda k, L: _bcast(k, (6, 5, 8), L.Multiply, (1, 1, 8), (6, 5, 8)),
    "mul_bcast_hwc_c": lambda k, L: _bcast(k, (6, 5, 8), L.Multiply, (6, 5, 8), (1, 1, 8)),
    "mul_bcast_hw1": lambda k, L: _bcast(k, (6, 5, 6), L.Multiply, (6, 5, 6), (6, 5, 1)),
    "mul_bcast_both": lambda k, L: _bcast(k, (6, 5, 4), L.Multiply, (6, 5, 1), (1, 1, 4)),
    "mul_add_const_per_channel": lambda k, L: _m(k, (6, 5, 4), L.Rescaling([0.5, 1.5, -2.0, 3.0],
                                                                            offset=[0.25, -1.0, 2.0, 0.5])),
    "maximum": lambda k, L: _two(k, (7, 6, 3), L.Maximum),
    "minimum_3": lambda k, L: _bcast(k, (6, 5, 4), L.Minimum, (6, 5, 4), (6, 5, 4), n=3),
    "maximum_bcast": lambda k, L: _bcast(k, (6, 5, 4), L.Maximum, (1, 1, 4), (6, 5, 4)),
    "minimum_bcast_hw1": lambda k, L: _bcast(k, (5, 6, 4), L.Minimum, (5, 6, 4), (5, 6, 1)),
    "se_block_conv": lambda k, L: _se(k, (8, 7, 16)),
    "se_block_dense_relu": lambda k, L: _se(k, (6, 6, 12), dense=True, act="relu"),
    "zeropad_asym": lambda k, L: _m(k, (7, 8, 3), L.ZeroPadding2D(((1, 2), (0, 1))), L.Conv2D(4, 3)),
    "rescaling_conv": lambda k, L: _m(k, (8, 8, 1), L.Rescaling(1 / 127.5, offset=-1.0),
                                      L.Conv2D(4, 3, padding="same")),
    "rescaling_only_pool": lambda k, L: _m(k, (6, 6, 2), L.Rescaling(0.5, offset=0.25), L.MaxPooling2D(2)),
    "reshape_dense": lambda k, L: _m(k, (4, 4, 4), L.Reshape((16, 4)), L.Reshape((64,)), L.Dense(5)),
    "dropout_dense": lambda k, L: _m(k, (3, 3, 4), L.Flatten(), L.Dropout(0.5), L.Dense(6)),
    "maxpool_relu6": lambda k, L: _m(k, (8, 8, 3), L.Conv2D(4, 3), L.MaxPooling2D(2), L.ReLU(6.0)),
    # pw16 fused with max pooling: first layer (1 channel, rows read straight from the input inside,
    # gathered at the border), a dilated one, 2 words per kernel row, and an in-place 1x1 in chunks
    "conv3x3_c1_maxpool_pw16": lambda k, L: _m(k, (10, 10, 1), L.Conv2D(6, 3, padding="same", activation="relu"),
                                               L.MaxPooling2D(2)),
    "conv3x3_c1_dil2_maxpool_pw16": lambda k, L: _m(k, (11, 11, 1), L.Conv2D(4, 3, dilation_rate=2, padding="same"),
                                                    L.MaxPooling2D(2)),
    "conv2x2_c3_maxpool3_pw16": lambda k, L: _m(k, (9, 9, 3), L.Conv2D(5, 2),
                                                L.MaxPooling2D(3, strides=2, padding="same")),
    "conv1x1_c40_maxpool_pw16": lambda k, L: _m(k, (6, 6, 40), L.Conv2D(9, 1), L.MaxPooling2D(2)),
    # a RELU6 the converter cannot fuse (after a concatenation): TFLite Micro clamps in the input's codes
    "concat_relu6": lambda k, L: _two(k, (7, 9, 3), L.Concatenate, act=6.0),
    "concat_relu": lambda k, L: _two(k, (7, 9, 3), L.Concatenate, act=True),
    "activation_layers": lambda k, L: _m(k, (6, 6, 3), L.Conv2D(4, 3), L.Activation("relu"), L.Flatten(),
                                         L.Dense(5), L.Activation("softmax")),
    # int8 activations as one 256-byte table each (lw_lut_s8); odd sizes run the kernel's byte tail
    "conv_sigmoid": lambda k, L: _m(k, (7, 9, 3), L.Conv2D(5, 3, padding="same", activation="sigmoid")),
    "conv_tanh": lambda k, L: _m(k, (7, 9, 3), L.Conv2D(5, 3, padding="same", activation="tanh")),
    "conv_hard_silu": lambda k, L: _m(k, (8, 8, 3), L.Conv2D(6, 3, padding="same", activation="hard_silu")),
    "conv_silu": lambda k, L: _m(k, (7, 7, 3), L.Conv2D(5, 3, padding="same", activation="silu")),
    "dense_hard_sigmoid": lambda k, L: _m(k, (24,), L.Dense(9, activation="hard_sigmoid")),
    "add_hard_sigmoid_tanh": lambda k, L: _act_after_add(k, (6, 7, 3), "hard_sigmoid", "tanh"),
    "input_sigmoid_hard_swish": lambda k, L: _m(k, (5, 7, 3), L.Activation("sigmoid"), L.Conv2D(4, 3),
                                                L.Activation("hard_swish")),
    "leaky_relu_0.2_in_place": lambda k, L: _m(k, (8, 8, 3), L.Conv2D(6, 3, padding="same"), L.LeakyReLU(0.2),
                                               L.Conv2D(4, 1)),
    "leaky_relu_0.01_dense": lambda k, L: _m(k, (30,), L.Dense(11), L.LeakyReLU(0.01)),
    "leaky_relu_3": lambda k, L: _m(k, (7, 6, 2), L.Conv2D(5, 3), L.LeakyReLU(3.0)),
    "relu_negative_slope": lambda k, L: _m(k, (7, 7, 3), L.Conv2D(4, 3), L.ReLU(negative_slope=0.1)),
    "prelu_unshared_in_place": lambda k, L: _m(k, (8, 7, 3), L.Conv2D(5, 3, padding="same"), L.PReLU(),
                                               L.MaxPooling2D(2)),
    "prelu_shared_hw": lambda k, L: _m(k, (8, 8, 3), L.Conv2D(6, 3, padding="same"), L.PReLU(shared_axes=[1, 2])),
    "prelu_shared_w": lambda k, L: _m(k, (6, 9, 2), L.Conv2D(4, 3), L.PReLU(shared_axes=[2])),
    "prelu_dense": lambda k, L: _m(k, (20,), L.Dense(13), L.PReLU()),
    # TRANSPOSE_CONV (gathered per output pixel): strides, padding, kernel sizes, odd sizes, no bias, relu
    "tconv3x3_s2_same": lambda k, L: _m(k, (7, 7, 3), L.Conv2DTranspose(4, 3, strides=2, padding="same")),
    "tconv2x2_s2_valid": lambda k, L: _m(k, (6, 5, 3), L.Conv2DTranspose(4, 2, strides=2, padding="valid")),
    "tconv3x3_s1_same_relu": lambda k, L: _m(k, (7, 6, 3), L.Conv2DTranspose(5, 3, padding="same",
                                                                               activation="relu")),
    "tconv4x4_s2_same_nobias_odd": lambda k, L: _m(k, (5, 7, 3), L.Conv2DTranspose(5, 4, strides=2, padding="same",
                                                                                     use_bias=False)),
    "tconv3x3_s2_valid_odd": lambda k, L: _m(k, (5, 4, 2), L.Conv2DTranspose(3, 3, strides=2, padding="valid")),
    "tconv3x2_s2x1_c8_relu": lambda k, L: _m(k, (4, 5, 8), L.Conv2DTranspose(6, (3, 2), strides=(2, 1),
                                                                              padding="same", activation="relu")),
    # RESIZE_NEAREST_NEIGHBOR (UpSampling1D/2D, converted as a resize: Keras' own graph is a TILE)
    "upsampling2x2_odd": lambda k, L: _m(k, (5, 7, 3), L.UpSampling2D(2), L.Conv2D(4, 3, padding="same")),
    "upsampling2x3_odd": lambda k, L: _m(k, (5, 3, 4), L.Conv2D(3, 1), L.UpSampling2D((2, 3))),
    "upsampling1d_x3": lambda k, L: _m(k, (21,), L.Reshape((7, 3)), L.UpSampling1D(3), L.Flatten(), L.Dense(5)),
    "unet_upsampling_relu": lambda k, L: _unet(k, (8, 10, 3), "upsampling", "relu"),
    "unet_tconv_linear": lambda k, L: _unet(k, (6, 8, 2), "tconv"),
    # 1-D signals (N, T, C): the converter makes Conv1D/pooling a RESHAPE to (1, 1, T, C) around the 2-D op
    "conv1d_sensor": lambda k, L: _m(k, (32, 3), L.Conv1D(8, 5, padding="same", activation="relu"), L.MaxPooling1D(2),
                                     L.Conv1D(12, 3, activation="relu"), L.GlobalAveragePooling1D(), L.Dense(5)),
    "conv1d_s2_dil_causal": lambda k, L: _m(k, (21, 4), L.Conv1D(6, 3, strides=2, padding="valid"),
                                            L.Conv1D(5, 3, dilation_rate=2, padding="causal")),
    "separable1d_dw1d": lambda k, L: _m(k, (18, 4), L.SeparableConv1D(6, 3, padding="same", activation="relu"),
                                        L.DepthwiseConv1D(3, strides=2, depth_multiplier=2)),
    "avgpool1d_gmp1d": lambda k, L: _m(k, (19, 5), L.Conv1D(6, 3, padding="same"),
                                       L.AveragePooling1D(3, strides=2, padding="same"), L.GlobalMaxPooling1D()),
    "gap1d_keepdims": lambda k, L: _m(k, (15, 6), L.Conv1D(4, 3), L.GlobalAveragePooling1D(keepdims=True)),
    "gap2d_keepdims": lambda k, L: _m(k, (6, 7, 3), L.Conv2D(5, 3), L.GlobalAveragePooling2D(keepdims=True)),
    # channels_first global poolings: MEAN / REDUCE_MAX over the last axes (over the channels of NHWC data)
    "mean_channels_1d": lambda k, L: _m(k, (12, 6), L.Conv1D(7, 3, padding="same"),
                                        L.GlobalAveragePooling1D(data_format="channels_first")),
    "mean_channels_2d_keepdims": lambda k, L: _m(k, (5, 6, 3), L.Conv2D(4, 3, padding="same"),
                                                 L.GlobalAveragePooling2D(data_format="channels_first",
                                                                          keepdims=True)),
    "max_channels_1d": lambda k, L: _m(k, (10, 5), L.Conv1D(6, 3), L.GlobalMaxPooling1D(data_format="channels_first")),
    "cropping1d": lambda k, L: _m(k, (20, 3), L.Conv1D(5, 3, padding="same"), L.Cropping1D((2, 5)),
                                  L.Conv1D(4, 3)),
    "cropping2d": lambda k, L: _m(k, (9, 10, 3), L.Conv2D(5, 3, padding="same"), L.Cropping2D(((1, 2), (3, 0))),
                                  L.Conv2D(4, 3)),
}


def _tf_int8(fn, shape: tuple[int, ...]) -> bytes:  # noqa: ANN001
    """A TensorFlow function of one (1, *shape) float input converted to a full-int8 .tflite."""
    import tensorflow as tf

    f = tf.function(fn, input_signature=[tf.TensorSpec((1,) + shape, tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    rng = np.random.default_rng(len(shape))
    conv.representative_dataset = lambda: ([rng.normal(0, 1, (1,) + shape).astype(np.float32)] for _ in range(32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected": the int8 input's own
        return bytes(conv.convert())


def _reshape_as(buf: bytes, new: str, axis: int) -> bytes:
    """The model with its RESHAPE ops rewritten as SQUEEZE (squeeze_dims [axis]) or EXPAND_DIMS (axis
    as a constant input), which the converter itself always writes as RESHAPE."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sg = m.subgraphs[0]
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = getattr(fb.BuiltinOperator, new)
    code.version = 1
    m.operatorCodes.append(code)
    reshape = [k for k, c in enumerate(m.operatorCodes) if c.builtinCode == fb.BuiltinOperator.RESHAPE]
    for op in sg.operators:
        if op.opcodeIndex not in reshape:
            continue
        op.opcodeIndex = len(m.operatorCodes) - 1
        if new == "SQUEEZE":
            op.inputs = op.inputs[:1]
            op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.SqueezeOptions, fb.SqueezeOptionsT()
            op.builtinOptions.squeezeDims = [axis]
        else:
            b = fb.BufferT()
            b.data = list(np.array([axis], np.int32).tobytes())
            m.buffers.append(b)
            t = fb.TensorT()
            t.shape, t.type, t.buffer, t.name = [1], fb.TensorType.INT32, len(m.buffers) - 1, b"expand_axis"
            sg.tensors.append(t)
            op.inputs = [op.inputs[0], len(sg.tensors) - 1]
            op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.ExpandDimsOptions, fb.ExpandDimsOptionsT()
    builder = flatbuffers.Builder(0)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _filter(*shape: int) -> np.ndarray:
    return np.random.default_rng(sum(shape)).normal(0, 0.4, shape).astype(np.float32)


def _conv(tf, x, w):  # noqa: ANN001, ANN202
    return tf.nn.conv2d(x, w, 1, "SAME")


# row -> a function of TensorFlow returning the int8 .tflite bytes
TFLITE_CASES = {
    "squeeze_op": lambda tf: _reshape_as(_tf_int8(lambda x: tf.squeeze(_conv(tf, x, _filter(1, 3, 3, 4)), 1),
                                                  (1, 9, 3)), "SQUEEZE", 1),
    "expand_dims_op": lambda tf: _reshape_as(_tf_int8(lambda x: _conv(tf, tf.expand_dims(x, 1), _filter(1, 3, 3, 5)),
                                                      (10, 3)), "EXPAND_DIMS", 1),
    "slice_op": lambda tf: _tf_int8(lambda x: tf.slice(_conv(tf, x, _filter(3, 3, 3, 4)), [0, 1, 2, 1], [1, 3, -1, 2]),
                                    (5, 7, 3)),
    "strided_slice_shrink": lambda tf: _tf_int8(lambda x: _conv(tf, x, _filter(3, 3, 3, 4))[:, 1, 2:8:2, :],
                                                (5, 9, 3)),
    "strided_slice_negative": lambda tf: _tf_int8(lambda x: _conv(tf, x, _filter(3, 3, 3, 5))[:, -4:-1, ::3, 1::2],
                                                  (6, 10, 3)),
}

# fast path (backend.Options) -> the struct field that says a layer takes it
FLAGS = {"fast_requant": "rq_fast", "mono_pool": "rq_mono", "pw16": "pw16", "dw16": "dw16", "dw_rows": "dw_rows",
         "in_place": "in_place", "add_lut": "add_lut", "fc4": "fc4"}
assert set(FLAGS) == set(backend.FAST_PATHS)
# each fast path off alone, then all of them: every layer takes the general path
VARIANTS = {f"no_{name}": backend.Options(**{name: False}) for name in backend.FAST_PATHS}
VARIANTS["general"] = backend.Options(**{name: False for name in backend.FAST_PATHS})
# rows that must take a fast path by default (so the path is compared with TFLite Micro at all)
PATHS = {case: "pw16" for case in CASES if case.endswith("_pw16")} | {
    "dwconv3x3_c8_pairs": "dw16", "conv1x1_c8_in_place": "in_place", "conv3x3_c8_odd_oc": "fast_requant",
    "maxpool2": "mono_pool", "add_lut_relu": "add_lut", "sub_lut": "add_lut", "sub_bcast_lut": "add_lut",
    "dense_softmax": "fc4", "dense_relu_nobias_2d": "fc4"} | {case: "dw_rows" for case in CASES if "_rows" in case}
# rows where a 3x3 convolution must write its output over its dying input (so each path is compared so)
OVER_INPUT = {case for case in CASES if case.startswith("conv3x3_") and case.endswith("_over_input")}
# rows that must not take a fast path by default (a limit of the kernel sends them the general way)
AVOIDS = {"conv7x7_c4_many_taps": "in_place"}


# rows that must keep an op separate (not fused into the op before it), or must reach the compiler as this op
OPS = {"concat_relu6": "RELU6", "concat_relu": "RELU", "conv_sigmoid": "LOGISTIC", "conv_tanh": "TANH",
       "conv_hard_silu": "HARD_SWISH", "conv_silu": "MUL", "leaky_relu_3": "LEAKY_RELU",
       "relu_negative_slope": "LEAKY_RELU", "prelu_shared_w": "PRELU", "tconv3x3_s1_same_relu": "TRANSPOSE_CONV",
       "upsampling2x2_odd": "RESIZE_NEAREST_NEIGHBOR", "upsampling1d_x3": "RESIZE_NEAREST_NEIGHBOR",
       "conv1d_s2_dil_causal": "PAD", "cropping1d": "STRIDED_SLICE", "cropping2d": "STRIDED_SLICE",
       "mean_channels_1d": "MEAN", "max_channels_1d": "REDUCE_MAX", "squeeze_op": "SQUEEZE",
       "expand_dims_op": "EXPAND_DIMS", "slice_op": "SLICE", "strided_slice_shrink": "STRIDED_SLICE",
       "strided_slice_negative": "STRIDED_SLICE"}
# rows whose elementwise op must broadcast an input (so the strided loops are compared at all)
BROADCASTS = {case for case in CASES if "bcast" in case or case.startswith("se_block") or "per_channel" in case}


def _takes(c, path: str) -> bool:  # noqa: ANN001
    """Some layer runs that fast path (rq_mono only matters where a max pool is fused into the conv)."""
    if path == "mono_pool":
        return any(k.kind == "convpool" and k.params["rq_mono"] and not k.params["pool_avg"] for k in c.kernels)
    return any(kern.params.get(FLAGS[path]) for kern in c.kernels)


def _over_input(c, k: int) -> bool:  # noqa: ANN001
    """Some k x k CONV_2D's output shares arena bytes with its input (the planner took its overlap)."""
    def span(tid: int) -> range | None:
        pl = c.plan.placements[tid]
        return range(pl.offset, pl.offset + c.graph.t(tid).nbytes) if pl.where == "arena" else None

    for op in c.graph.ops:
        if op.opcode == "CONV_2D" and c.graph.t(op.inputs[1]).shape[1] == k:
            a, b = span(op.inputs[0]), span(op.outputs[0])
            if a is not None and b is not None and a.start < b.stop and b.start < a.stop:
                return True
    return False


def _broadcasts(c) -> bool:  # noqa: ANN001
    """Some elementwise kernel steps 0 along a loop of more than one iteration for one of its inputs."""
    return any(k.kind in ("add", "mul", "maxmin") and any(k.params[f"in{j}_s{d}"] == 0 and k.params[f"n{d}"] > 1
                                                          for j in (1, 2) for d in range(4)) for k in c.kernels)


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_bitexact_with_tflm(case, keras, tmp_path):  # noqa: ANN001
    """Default kernels (portable, SIMD, both under sanitizers), then every fast path turned off in turn
    and all at once: each build that differs equals TFLite Micro on every byte. The plan's arena is
    never larger than TFLite Micro's activation arena for the same .tflite."""
    model = CASES[case](keras, keras.layers)
    randomize(model, seed=len(case))
    c = compile_keras(model, tmp_path, seed=len(case))
    assert c.plan.arena_bytes <= reference.tflm_arena(c.tflite, c.graph.input.shape)["head"]
    _check_bitexact(case, c, tmp_path)


@pytest.mark.parametrize("case", sorted(TFLITE_CASES))
def test_tflite_op_bitexact_with_tflm(case, tmp_path):  # noqa: ANN001
    """The same comparisons for an int8 .tflite written from TensorFlow functions."""
    import tensorflow as tf

    path = tmp_path / f"{case}.tflite"
    path.write_bytes(TFLITE_CASES[case](tf))
    _check_bitexact(case, compiler.compile_model(str(path)), tmp_path)


def _check_bitexact(case: str, c, tmp_path) -> None:  # noqa: ANN001
    if case in PATHS:
        assert _takes(c, PATHS[case]), f"{case} does not exercise {PATHS[case]}"
    if case in AVOIDS:
        assert not _takes(c, AVOIDS[case]), f"{case} takes {AVOIDS[case]} beyond the kernel's limit"
    if case in OPS:
        assert OPS[case] in [op.opcode for op in c.graph.ops], f"{case} has no (separate) {OPS[case]}"
    if case in BROADCASTS:
        assert _broadcasts(c), f"{case} broadcasts no input"
    if case in OVER_INPUT:
        assert _over_input(c, 3), f"{case}: no 3x3 convolution writes over its input"
    x = random_inputs(c, 48)
    expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
    got = hostrun.build_host(c.gen.files).run(x)
    assert got.shape == expect.shape
    assert np.array_equal(got, expect), f"{case}: {(got != expect).sum()} bytes differ"
    # the SIMD (DSP) code path, its instructions modelled in C, also under AddressSanitizer + UBSan
    simd = hostrun.build_host(c.gen.files, simd=True).run(x)
    assert np.array_equal(simd, expect), f"{case} (SIMD path): {(simd != expect).sum()} bytes differ"
    for flags in ({}, {"simd": True}):  # -O0: half the build time of -O1, nothing optimized away
        san = hostrun.build_host(c.gen.files, sanitize=True, opt="-O0", **flags).run(x[:6])
        assert np.array_equal(san, expect[:6]), f"{case} {flags} under sanitizers"
    # the header's documented usage, as C99 and C++17 (issue: the C API as an engineer integrates it)
    from tests.test_c_api import check_documented_usage

    check_documented_usage(c, tmp_path / "user", opt="-O0")
    seen = [c.gen.files]
    for name, opts in VARIANTS.items():
        off = [p for p in backend.FAST_PATHS if not getattr(opts, p)]
        if not any(_takes(c, p) for p in off):
            continue  # no layer takes that path here: turning it off changes no code path
        v = compiler.recompile(c, opts)
        assert not any(_takes(v, p) for p in off), f"{case} {name}: a disabled fast path is still taken"
        if any(v.gen.files == files for files in seen):
            continue  # the switch changes nothing in this model: already compared
        seen.append(v.gen.files)
        for simd_path in (False, True):  # -O0: the same C semantics, built four times faster
            out = hostrun.build_host(v.gen.files, simd=simd_path, opt="-O0").run(x)
            assert np.array_equal(out, expect), f"{case} {name} simd={simd_path}: {(out != expect).sum()} bytes differ"


# (6, 149) and (165, 75) from 5 x 7: sizes where single precision picks another source pixel than exact
# arithmetic would (column 37 of 149; row 20 of 165, column 18 of 75)
def _edited_tflite(model, shape, edit, path):  # noqa: ANN001, ANN202
    """The model quantized, with edit(model_t, subgraph_t, opcode name of each operator) applied to its flatbuffer:
    ops as other tools write them, which the Keras converter never does."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    from lwcnn_mcu.frontend import keras_model

    buf = keras_model.quantize(model, np.random.default_rng(0).normal(0, 1, (16,) + shape).astype(np.float32))
    m = fb.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    sg = m.subgraphs[0]
    edit(m, sg, [names[m.operatorCodes[o.opcodeIndex].builtinCode] for o in sg.operators])
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return compiler.compile_model(str(path))


def _check_host_c(c, n: int = 8) -> None:  # noqa: ANN001
    x = random_inputs(c, n)
    expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
    for flags in ({}, {"simd": True}, {"sanitize": True, "opt": "-O1"}):
        got = hostrun.build_host(c.gen.files, **flags).run(x)
        assert np.array_equal(got, expect), f"{flags}: {(got != expect).sum()} bytes differ"


@pytest.mark.parametrize("act", ["RELU", "RELU6", "RELU_N1_TO_1"])
def test_tconv_fused_activation_bitexact_with_tflm(keras, tmp_path, act):  # noqa: ANN001
    """A fused activation on TRANSPOSE_CONV whose clamps lie inside int8 (output zero point 0, scale 1/20:
    relu at 0, relu6 at 120, n1_to_1 at -20 and 20): TFLite Micro clamps, and so must the C."""
    from ai_edge_litert import schema_py_generated as fb

    model = _m(keras, (5, 6, 3), keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"))
    randomize(model, seed=5)

    def edit(m, sg, ops):  # noqa: ANN001, ANN202
        op = sg.operators[ops.index("TRANSPOSE_CONV")]
        op.builtinOptions.fusedActivationFunction = getattr(fb.ActivationFunctionType, act)
        q = sg.tensors[op.outputs[0]].quantization
        q.scale, q.zeroPoint = [0.05], [0]

    c = _edited_tflite(model, (5, 6, 3), edit, tmp_path / "tconv.tflite")
    assert (c.graph.ops[0].lowered["act_min"], c.graph.ops[0].lowered["act_max"]) == {
        "RELU": (0, 127), "RELU6": (0, 120), "RELU_N1_TO_1": (-20, 20)}[act]
    _check_host_c(c)


RESIZES = [(False, False, (8, 11)), (True, False, (9, 4)), (False, True, (7, 5)), (True, True, (3, 13)),
           (True, False, (1, 1)), (True, False, (6, 149)), (True, True, (165, 75))]


@pytest.mark.parametrize("align,half,size", RESIZES,
                         ids=[f"align{int(a)}_half{int(h)}_{s[0]}x{s[1]}" for a, h, s in RESIZES])
def test_resize_nearest_modes_bitexact_with_tflm(keras, tmp_path, align, half, size):  # noqa: ANN001
    """RESIZE_NEAREST_NEIGHBOR as other tools write it (Keras only makes half-pixel integer upsampling):
    align_corners and half_pixel_centers, up and down, non-integer ratios; the index maps computed in
    float32 must pick TFLite Micro's source pixels."""
    model = _m(keras, (5, 7, 3), keras.layers.Conv2D(3, 1), keras.layers.UpSampling2D(2))
    randomize(model, seed=3)

    def edit(m, sg, ops):  # noqa: ANN001, ANN202
        op = sg.operators[ops.index("RESIZE_NEAREST_NEIGHBOR")]
        op.builtinOptions.alignCorners, op.builtinOptions.halfPixelCenters = align, half
        m.buffers[sg.tensors[op.inputs[1]].buffer].data = np.array(size, np.int32).view(np.uint8).tolist()
        out = sg.tensors[op.outputs[0]]
        out.shape = out.shapeSignature = [1, size[0], size[1], 3]

    _check_host_c(_edited_tflite(model, (5, 7, 3), edit, tmp_path / "resize.tflite"))


# scales where computing SUB's multipliers in float32 (as one tflite-micro version's sub_common.cc does)
# instead of ADD's double changes 7 of the 65536 outputs: the pinned TFLite Micro computes them in double
PAIR_QUANT = ((0.02766035683453083, 3), (0.036656398326158524, -7), (0.049428801983594894, -5))


@pytest.mark.parametrize("merge", ["Subtract", "Add", "Multiply"])
def test_binary_all_code_pairs(merge, keras, tmp_path):  # noqa: ANN001
    """Every pair of int8 codes through SUB / ADD / MUL, broadcast as [1,256,1,1] op [1,1,256,1], with three
    different quantizations (written into the converted model), equals TFLite Micro on every byte. (4-D:
    the converter fails on the 3-D ADD, taking it for a BiasAdd.)"""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    from lwcnn_mcu.frontend import keras_model

    L = keras.layers
    inp = keras.Input((256, 1, 1))
    model = keras.Model(inp, getattr(L, merge)()([inp, L.Reshape((1, 256, 1))(inp)]))
    buf = keras_model.quantize(model, np.random.default_rng(0).normal(0, 1, (8, 256, 1, 1)).astype(np.float32))
    m = fb.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sg = m.subgraphs[0]
    reshape = next(op for op in sg.operators if op.outputs[0] not in sg.outputs)
    # the input, the reshaped copy (RESHAPE moves bytes, whatever the quantization says) and the output
    for tid, (scale, zp) in zip((sg.inputs[0], reshape.outputs[0], sg.outputs[0]), PAIR_QUANT, strict=True):
        sg.tensors[tid].quantization.scale, sg.tensors[tid].quantization.zeroPoint = [scale], [zp]
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path = tmp_path / f"pairs_{merge.lower()}.tflite"
    path.write_bytes(bytes(b.Output()))
    c = compiler.compile_model(str(path))
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256, 1, 1)
    expect = reference.tflm_run(c.tflite, x, c.graph.input.shape)
    for flags in ({}, {"simd": True}, {"sanitize": True, "opt": "-O1"}):
        got = hostrun.build_host(c.gen.files, **flags).run(x)
        assert np.array_equal(got, expect), f"{merge} {flags}: {(got != expect).sum()} of 65536 bytes differ"


def test_broadcast_loops_match_numpy():
    """ir.broadcast_loops walks every input element NumPy's broadcasting pairs with each output element,
    in the output's memory order, for 3000 random pairs of shapes of rank 0 to 4 with dimensions 1 to 3."""
    import itertools

    from lwcnn_mcu import ir

    shapes = [s for r in range(5) for s in itertools.product((1, 2, 3), repeat=r)]
    rng = np.random.default_rng(0)
    for k in rng.choice(len(shapes) ** 2, 3000, replace=False):
        a, b = shapes[k // len(shapes)], shapes[k % len(shapes)]
        try:
            y = np.broadcast_shapes(a, b)
        except ValueError:
            with pytest.raises(ValueError):
                ir.broadcast_loops(a, b, a if len(a) >= len(b) else b)
            continue
        lw = ir.broadcast_loops(a, b, y)
        got_a, got_b = [], []
        for i0, i1, i2, i3 in itertools.product(*(range(lw[f"n{d}"]) for d in range(4))):
            got_a.append(sum(i * lw[f"in1_s{d}"] for d, i in enumerate((i0, i1, i2, i3))))
            got_b.append(sum(i * lw[f"in2_s{d}"] for d, i in enumerate((i0, i1, i2, i3))))
        assert got_a == np.broadcast_to(np.arange(int(np.prod(a))).reshape(a), y).ravel().tolist(), (a, b)
        assert got_b == np.broadcast_to(np.arange(int(np.prod(b))).reshape(b), y).ravel().tolist(), (a, b)
    assert ir.broadcast_loops((1, 1, 1, 8), (1, 6, 5, 8), (1, 6, 5, 8))["n3"] == 8  # the SE gate: rows of C
    assert ir.broadcast_loops((1, 6, 5, 8), (1, 6, 5, 8), (1, 6, 5, 8))["n3"] == 240  # same shape: one row
    with pytest.raises(ValueError, match="nested loops"):
        ir.broadcast_loops((2, 1, 2, 1, 2), (1, 2, 1, 2, 1), (2, 2, 2, 2, 2))
