"""Networks the benchmarks share (built from Keras layers only)."""

from __future__ import annotations

from tf_admm import keras

L = keras.layers


def cifar_resnet(input_shape=(32, 32, 3), width: int = 16, blocks: int = 3, classes: int = 10):
    """He et al.'s CIFAR ResNet: 3 stages of ``blocks`` basic blocks (depth 6 * blocks + 2),
    identity shortcuts, a strided 1x1 projection where a stage starts, BatchNorm."""
    inputs = keras.Input(input_shape)
    x = L.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    x = L.ReLU()(L.BatchNormalization()(x))
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            y = L.Conv2D(filters, 3, stride, padding="same", use_bias=False)(x)
            y = L.ReLU()(L.BatchNormalization()(y))
            y = L.Conv2D(filters, 3, padding="same", use_bias=False)(y)
            y = L.BatchNormalization()(y)
            if stride != 1:
                x = L.BatchNormalization()(L.Conv2D(filters, 1, stride, use_bias=False)(x))
            x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(classes)(x), name=f"resnet{6 * blocks + 2}")


def mobilenet_v2_small(
    input_shape=(28, 28, 1),
    blocks=((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 48, 2, 1)),
    classes: int = 10,
):
    """A MobileNetV2-style net for small inputs: inverted residual blocks (1x1 expand,
    3x3 depthwise, 1x1 linear project, BatchNorm and ReLU6), identity shortcuts where a block
    keeps its shape; ``blocks`` as in Sandler et al.'s table: (expansion, channels, repeats,
    first stride)."""
    inputs = keras.Input(input_shape)
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    for expansion, channels, repeats, first_stride in blocks:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            y = x
            if expansion != 1:
                y = L.Conv2D(expansion * x.shape[-1], 1, use_bias=False)(y)
                y = L.ReLU(6.0)(L.BatchNormalization()(y))
            y = L.DepthwiseConv2D(3, stride, padding="same", use_bias=False)(y)
            y = L.ReLU(6.0)(L.BatchNormalization()(y))
            y = L.BatchNormalization()(L.Conv2D(channels, 1, use_bias=False)(y))
            x = L.Add()([x, y]) if stride == 1 and x.shape[-1] == channels else y
    x = L.Conv2D(128, 1, use_bias=False)(x)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(classes)(x), name="mobilenet_v2_small")
