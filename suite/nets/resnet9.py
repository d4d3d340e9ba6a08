"""ResNet-9, the DAWNBench CIFAR-10 network of David Page (Myrtle.ai, 2018, "How to train your ResNet 4:
Architecture"; code: github.com/davidcpage/cifar10-fast, `net()`): 94 % test accuracy in 24 epochs.

prep:   conv 3×3 64 → BN → ReLU                                                     32×32
layer1: conv 3×3 128 → BN → ReLU → max pool 2, + residual (two conv-BN-ReLU 128)      16×16
layer2: conv 3×3 256 → BN → ReLU → max pool 2                                        8×8
layer3: conv 3×3 512 → BN → ReLU → max pool 2, + residual (two conv-BN-ReLU 512)      4×4
head:   global max pool → FC 10 without bias → × 0.125 → softmax
A residual here is x + relu(bn(conv(relu(bn(conv(x)))))): ReLU inside, no ReLU after the addition. Convs have
no bias (BN follows). BN and initialisation are PyTorch's defaults, as in that code: BN momentum 0.1 (Keras'
0.9), ε 1e-5; weights uniform in ±1/√fan_in (`initializer="torch"`; any Keras initializer name also works).
6,573,120 trainable parameters (6.57 M, the figure quoted for it), plus BN's 4,480 moving statistics.
The ×0.125 scaling of the logits is the paper's: it keeps the early softmax soft with a 512-wide unscaled FC.
"""

from ..lazy import keras, layers

from ..registry import register
from . import blocks


def _initializer(name):
    if name == "torch":  # PyTorch's Conv2d/Linear default, kaiming_uniform(a=√5): U(±√(1/fan_in))
        return keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")
    return name


def conv_bn(x, filters, *, weight_decay, initializer, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=initializer,
                      kernel_regularizer=blocks.regularizer(weight_decay), name=f"{name}_conv")(x)
    x = blocks.bn(x, epsilon=1e-5, name=f"{name}_bn")
    return layers.Activation("relu", name=f"{name}_relu")(x)


def residual(x, *, name, **kw):
    y = conv_bn(x, x.shape[-1], name=f"{name}_res1", **kw)
    y = conv_bn(y, x.shape[-1], name=f"{name}_res2", **kw)
    return layers.Add(name=f"{name}_add")([x, y])


@register("resnet9", input_shape=(32, 32, 3),
          summary="ResNet-9 (Page 2018, DAWNBench): 94 % on CIFAR-10 in 24 epochs")
def resnet9(input_shape=(32, 32, 3), num_classes=10, *, width=1.0, weight_decay=0.0, initializer="torch",
            logit_scale=0.125, name="resnet9"):
    """ResNet-9 (Page 2018): prep 64, layer1 128 + residual, layer2 256, layer3 512 + residual, max pool, FC."""
    f = blocks.scaler(width)
    kw = dict(weight_decay=weight_decay, initializer=_initializer(initializer))
    x = inp = blocks.inputs(input_shape)
    x = conv_bn(x, f(64), name="prep", **kw)
    for i, (filters, res) in enumerate([(128, True), (256, False), (512, True)], start=1):
        x = conv_bn(x, f(filters), name=f"layer{i}", **kw)
        x = layers.MaxPooling2D(2, name=f"layer{i}_pool")(x)
        if res:
            x = residual(x, name=f"layer{i}", **kw)
    x = layers.GlobalMaxPooling2D(name="head_pool")(x)
    x = layers.Dense(num_classes, use_bias=False, kernel_initializer=kw["initializer"],
                     kernel_regularizer=blocks.regularizer(weight_decay), name="head_dense")(x)
    x = layers.Rescaling(logit_scale, name="head_scale")(x)
    out = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inp, out, name=name)
