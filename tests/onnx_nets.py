"""Small ONNX models built with the onnx helper API, laid out as torch.onnx.export writes them (NCHW,
node names like '/layer1/conv/Conv', initializers for weights), with random weights: no torch needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Builder:
    def __init__(self, seed: int = 0, opset: int = 17) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.opset = opset
        self.domains: set[str] = set()

    def const(self, arr: np.ndarray, name: str) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, n_out: int = 1, **attrs) -> str:  # noqa: ANN003
        from onnx import helper

        outs = [f"{name}_output_{i}" for i in range(n_out)]
        if attrs.get("domain"):
            self.domains.add(attrs["domain"])
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0]

    def conv(self, x: str, cin: int, cout: int, k: int, name: str, stride: int = 1, pad: int | None = None,
             group: int = 1, bias: bool = True) -> str:
        pad = k // 2 if pad is None else pad
        fan_in = cin // group * k * k
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // group, k, k)).astype(np.float32)
        ins = [x, self.const(w, f"{name}.weight")]
        if bias:
            ins.append(self.const(self.rng.normal(0, 0.1, cout).astype(np.float32), f"{name}.bias"))
        return self.node("Conv", ins, f"/{name}/Conv", kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, group=group, dilations=[1, 1])

    def bn(self, x: str, c: int, name: str) -> str:
        r = self.rng
        ps = [self.const(r.uniform(0.5, 1.5, c).astype(np.float32), f"{name}.weight"),
              self.const(r.normal(0, 0.2, c).astype(np.float32), f"{name}.bias"),
              self.const(r.normal(0, 0.2, c).astype(np.float32), f"{name}.running_mean"),
              self.const(r.uniform(0.5, 2.0, c).astype(np.float32), f"{name}.running_var")]
        return self.node("BatchNormalization", [x, *ps], f"/{name}/BatchNormalization", epsilon=1e-5)

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], f"/{name}/Relu")

    def relu6(self, x: str, name: str) -> str:
        lo = self.const(np.array(0.0, np.float32), f"{name}.min")
        hi = self.const(np.array(6.0, np.float32), f"{name}.max")
        return self.node("Clip", [x, lo, hi], f"/{name}/Clip")

    def linear(self, x: str, k: int, m: int, name: str) -> str:
        w = self.rng.normal(0, np.sqrt(2.0 / k), (m, k)).astype(np.float32)
        b = self.rng.normal(0, 0.1, m).astype(np.float32)
        return self.node("Gemm", [x, self.const(w, f"{name}.weight"), self.const(b, f"{name}.bias")],
                         f"/{name}/Gemm", alpha=1.0, beta=1.0, transB=1)

    def save(self, path: Path, in_shape: list, out: str, out_shape: list, name: str) -> Path:
        import onnx
        from onnx import TensorProto, helper

        self.nodes.append(helper.make_node("Identity", [out], ["output"], name="/output/Identity"))
        g = helper.make_graph(self.nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
                              initializer=self.inits)
        opsets = [helper.make_opsetid("", self.opset)] + [helper.make_opsetid(d, 1) for d in sorted(self.domains)]
        m = helper.make_model(g, opset_imports=opsets, producer_name="pytorch",
                              producer_version="2.11.0")
        m.ir_version = 8
        onnx.checker.check_model(m)
        onnx.save(m, str(path))
        return path


def cnn_bn(path: Path) -> Path:
    """A small MNIST-shaped CNN: conv + BatchNorm + ReLU + max pool twice, flatten of a 16x7x7 map (its
    C x H x W order differs from the compiled H x W x C), two Linear layers."""
    b = Builder(seed=1)
    x = b.relu(b.bn(b.conv("input", 1, 8, 3, "conv1", bias=False), 8, "bn1"), "relu1")
    x = b.node("MaxPool", [x], "/pool1/MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    x = b.relu(b.bn(b.conv(x, 8, 16, 3, "conv2", bias=False), 16, "bn2"), "relu2")
    x = b.node("MaxPool", [x], "/pool2/MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    x = b.node("Flatten", [x], "/flatten/Flatten", axis=1)
    x = b.relu(b.linear(x, 16 * 7 * 7, 32, "fc1"), "relu3")
    x = b.linear(x, 32, 10, "fc2")
    return balance(set_bn_statistics(b.save(path, ["batch", 1, 28, 28], x, ["batch", 10], "cnn_bn")))


def dw_separable(path: Path) -> Path:
    """MobileNet-style: a stride-2 stem with PyTorch's symmetric padding (not TensorFlow's 'same'), ReLU6,
    depthwise-separable blocks (one strided), x.mean((2, 3)) as opset 18 writes it (ReduceMean, axes as
    an input), a Linear head; a fixed batch of 1."""
    b = Builder(seed=2, opset=18)
    x = b.relu6(b.bn(b.conv("input", 3, 16, 3, "stem", stride=2, bias=False), 16, "stem_bn"), "stem_act")
    for i, (cin, cout, s) in enumerate([(16, 24, 1), (24, 32, 2)]):
        x = b.relu(b.bn(b.conv(x, cin, cin, 3, f"b{i}.dw", stride=s, group=cin, bias=False), cin, f"b{i}.dw_bn"),
                   f"b{i}.dw_act")
        x = b.relu(b.bn(b.conv(x, cin, cout, 1, f"b{i}.pw", bias=False), cout, f"b{i}.pw_bn"), f"b{i}.pw_act")
    x = b.node("ReduceMean", [x, b.const(np.array([2, 3], np.int64), "mean_axes")], "/pool/ReduceMean", keepdims=0)
    x = b.linear(x, 32, 10, "classifier")
    return balance(set_bn_statistics(b.save(path, [1, 3, 32, 32], x, [1, 10], "dw_separable")))


def residual(path: Path) -> Path:
    """ResNet-style: a basic block with an identity shortcut (Add), a strided one with a 1x1 projection,
    a max pool with PyTorch's padding after a ReLU, global average pooling, x.view(x.size(0), -1) as a
    dynamic-batch export writes it (Shape, Gather, Unsqueeze, Concat, Reshape), and a Linear head."""
    b = Builder(seed=3)
    x = b.relu(b.bn(b.conv("input", 3, 8, 3, "stem", bias=False), 8, "stem_bn"), "stem_relu")
    y = b.relu(b.bn(b.conv(x, 8, 8, 3, "l1.conv1", bias=False), 8, "l1.bn1"), "l1.relu1")
    y = b.bn(b.conv(y, 8, 8, 3, "l1.conv2", bias=False), 8, "l1.bn2")
    x = b.relu(b.node("Add", [x, y], "/l1/Add"), "l1.relu2")
    y = b.relu(b.bn(b.conv(x, 8, 16, 3, "l2.conv1", stride=2, bias=False), 16, "l2.bn1"), "l2.relu1")
    y = b.bn(b.conv(y, 16, 16, 3, "l2.conv2", bias=False), 16, "l2.bn2")
    s = b.bn(b.conv(x, 8, 16, 1, "l2.down", stride=2, bias=False), 16, "l2.down_bn")
    x = b.relu(b.node("Add", [y, s], "/l2/Add"), "l2.relu2")
    x = b.node("MaxPool", [x], "/pool/MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    x = b.node("GlobalAveragePool", [x], "/avgpool/GlobalAveragePool")
    shape = b.node("Shape", [x], "/Shape")
    n = b.node("Gather", [shape, b.const(np.array(0, np.int64), "/Constant_0")], "/Gather", axis=0)
    n = b.node("Unsqueeze", [n, b.const(np.array([0], np.int64), "/Constant_1")], "/Unsqueeze")
    target = b.node("Concat", [n, b.const(np.array([-1], np.int64), "/Constant_2")], "/Concat", axis=0)
    x = b.node("Reshape", [x, target], "/Reshape")
    x = b.linear(x, 16, 10, "fc")
    return balance(set_bn_statistics(b.save(path, ["N", 3, 16, 16], x, ["N", 10], "residual")))


def gemm_head(path: Path) -> Path:
    """A classifier head on (N, 64) features: Gemm + BatchNorm1d + ReLU, MatMul + Add (a Linear exported
    without Gemm), Dropout, a Gemm with transB=0 and alpha/beta, Softmax."""
    b = Builder(seed=4)
    x = b.relu(b.bn(b.linear("input", 64, 48, "fc1"), 48, "bn1"), "relu1")
    w = b.const(b.rng.normal(0, np.sqrt(2.0 / 48), (48, 32)).astype(np.float32), "fc2.weight_t")
    x = b.node("MatMul", [x, w], "/fc2/MatMul")
    x = b.node("Add", [x, b.const(b.rng.normal(0, 0.1, 32).astype(np.float32), "fc2.bias")], "/fc2/Add")
    x = b.relu(x, "relu2")
    x = b.node("Dropout", [x], "/dropout/Dropout")
    w3 = b.const(b.rng.normal(0, np.sqrt(2.0 / 32), (32, 10)).astype(np.float32), "fc3.weight_t")
    x = b.node("Gemm", [x, w3, b.const(b.rng.normal(0, 0.1, (1, 10)).astype(np.float32), "fc3.bias")],
               "/fc3/Gemm", alpha=0.5, beta=2.0, transB=0)
    x = b.node("Softmax", [x], "/softmax/Softmax", axis=1)
    return set_bn_statistics(b.save(path, ["batch", 64], x, ["batch", 10], "gemm_head"))


NETS = {"cnn_bn": cnn_bn, "dw_separable": dw_separable, "residual": residual, "gemm_head": gemm_head}


SHAPES = {"cnn_bn": (1, 28, 28), "dw_separable": (3, 32, 32), "residual": (3, 16, 16), "gemm_head": (64,)}


def inputs(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Float inputs in the model's own (NCHW) layout: images in [0, 1] made of a random 4x4 pattern
    enlarged to the image size plus a little noise (so that pooled features differ between images, as
    real ones do), or standard normal feature vectors."""
    shape = SHAPES[Path(name).stem]
    rng = np.random.default_rng(seed)
    if len(shape) == 1:
        return rng.normal(0, 1, (n, *shape)).astype(np.float32)
    c, h, w = shape
    low = rng.random((n, c, 4, 4), dtype=np.float32)
    x = np.kron(low, np.ones((1, 1, h // 4, w // 4), np.float32)) + rng.normal(0, 0.1, (n, c, h, w))
    return np.clip(x, 0, 1).astype(np.float32)


def _run(m, x: np.ndarray, extra: str | None = None) -> np.ndarray:  # noqa: ANN001
    """onnxruntime on each input alone (some models have a fixed batch of 1); ``extra`` names an inner
    tensor to return instead of the output."""
    import onnx
    import onnxruntime as ort

    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    if extra is not None:
        del m2.graph.output[:]
        m2.graph.output.append(onnx.helper.make_tensor_value_info(extra, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m2.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": xi[None]})[0] for xi in x])


def set_bn_statistics(path: Path, seed: int = 98) -> Path:
    """Give every BatchNormalization the mean and variance of its input over sample inputs, as training
    leaves them (random statistics would leave most channels constant or dead)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    x = inputs(path.stem, 256, seed)
    inits = {i.name: i for i in m.graph.initializer}
    for nd in m.graph.node:
        if nd.op_type != "BatchNormalization":
            continue
        a = _run(m, x, nd.input[0])
        axes = (0, 2, 3) if a.ndim == 4 else (0,)
        for name, v in ((nd.input[3], a.mean(axes)), (nd.input[4], a.var(axes) + 1e-3)):
            inits[name].CopyFrom(numpy_helper.from_array(v.astype(np.float32), name))
    onnx.save(m, str(path))
    return path


def balance(path: Path, seed: int = 99) -> Path:
    """Rescale the last Gemm of a random-weight classifier so that each logit has mean 0 and standard
    deviation 1 over sample inputs: its classes are then all predicted, and an argmax agreement figure
    says something (a random network otherwise answers one class for every input)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    y = _run(m, inputs(path.stem, 256, seed))
    gemm = [nd for nd in m.graph.node if nd.op_type == "Gemm"][-1]
    inits = {i.name: i for i in m.graph.initializer}
    w = numpy_helper.to_array(inits[gemm.input[1]])
    b = numpy_helper.to_array(inits[gemm.input[2]])
    mean, std = y.mean(0), y.std(0) + 1e-6
    inits[gemm.input[1]].CopyFrom(numpy_helper.from_array((w / std[:, None]).astype(np.float32), gemm.input[1]))
    inits[gemm.input[2]].CopyFrom(numpy_helper.from_array(((b - mean) / std).astype(np.float32), gemm.input[2]))
    onnx.save(m, str(path))
    return path


def op_zoo(path: Path) -> Path:
    """The ops and attributes the four networks above leave out: input normalization (Sub, Div by
    per-channel constants), auto_pad SAME_UPPER, dilation, the product of two tensors, a depthwise
    convolution with multiplier 2, a BatchNormalization after an Add (not foldable), Pad, average pooling
    with and without padding, Concat, a ReLU that no op before it takes, global max pooling, Squeeze,
    Softmax."""
    b = Builder(seed=6)
    x = b.node("Sub", ["input", b.const(np.array([0.5, 0.4, 0.3], np.float32).reshape(1, 3, 1, 1), "mean")],
               "/norm/Sub")
    x = b.node("Div", [x, b.const(np.array([0.25, 0.2, 0.3], np.float32).reshape(3, 1, 1), "std")], "/norm/Div")
    w = b.const(b.rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "c1.weight")
    a = b.relu(b.node("Conv", [x, w], "/c1/Conv", kernel_shape=[3, 3], auto_pad="SAME_UPPER"), "c1")
    w = b.const(b.rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32), "c2.weight")
    c = b.relu6(b.node("Conv", [a, w], "/c2/Conv", kernel_shape=[3, 3], pads=[2, 2, 2, 2], dilations=[2, 2]), "c2")
    x = b.node("Mul", [a, c], "/gate/Mul")
    d = b.conv(x, 8, 16, 3, "dw2", group=8)
    x = b.bn(b.node("Add", [d, d], "/twice/Add"), 16, "bn_after_add")
    x = b.node("Pad", [x, b.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")], "/pad/Pad")
    x = b.node("AveragePool", [x], "/avg3/AveragePool", kernel_shape=[3, 3], strides=[1, 1])
    x = b.node("AveragePool", [x], "/avg2/AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=1)
    x = b.node("Concat", [x, b.conv(x, 16, 8, 1, "side")], "/cat/Concat", axis=1)
    x = b.relu(x, "act")  # a ReLU on its own (a ReLU6 on its own: see test_onnx.py)
    x = b.node("GlobalMaxPool", [x], "/gmp/GlobalMaxPool")
    x = b.node("Squeeze", [x, b.const(np.array([2, 3], np.int64), "sq_axes")], "/squeeze/Squeeze")
    x = b.node("Softmax", [b.linear(x, 24, 10, "fc")], "/softmax/Softmax", axis=-1)
    return b.save(path, ["N", 3, 12, 12], x, ["N", 10], "op_zoo")


SHAPES["op_zoo"] = (3, 12, 12)
