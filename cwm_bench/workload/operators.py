"""Standalone TE operator workloads, at shapes taken from real networks.

Each entry names the network layer its shape comes from, so a reader can check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cwm_bench.workload.workload import Workload


@dataclass(frozen=True)
class OperatorSpec:
    name: str
    family: str
    builder: str  # function name in tvm.s_tir.meta_schedule.testing.te_workload
    params: tuple[Any, ...]
    shape_from: str


# (name, family, te_workload function, params, where the shape comes from)
OPERATORS: tuple[OperatorSpec, ...] = (
    OperatorSpec("matmul_128x768x768", "matmul", "matmul", (128, 768, 768), "BERT-base QKV/out projection"),
    OperatorSpec("matmul_128x3072x768", "matmul", "matmul", (128, 3072, 768), "BERT-base FFN up"),
    OperatorSpec("matmul_128x768x3072", "matmul", "matmul", (128, 768, 3072), "BERT-base FFN down"),
    OperatorSpec("matmul_197x768x768", "matmul", "matmul", (197, 768, 768), "ViT-B/16 projection"),
    OperatorSpec("matmul_1x1000x2048", "matmul", "matmul", (1, 1000, 2048), "ResNet-50 classifier"),
    OperatorSpec("matmul_1x1000x512", "matmul", "matmul", (1, 1000, 512), "ResNet-18 classifier"),
    OperatorSpec("batch_matmul_12x128x128x64", "batch_matmul", "batch_matmul_nkkm", (12, 128, 128, 64),
                 "BERT-base attention scores"),
    OperatorSpec("batch_matmul_12x128x64x128", "batch_matmul", "batch_matmul_nkkm", (12, 128, 64, 128),
                 "BERT-base attention x V"),
    OperatorSpec("batch_matmul_12x197x197x64", "batch_matmul", "batch_matmul_nkkm", (12, 197, 197, 64),
                 "ViT-B/16 attention scores"),
    OperatorSpec("conv1d_256x64x128_k3s2", "conv1d", "conv1d_nlc", (1, 256, 64, 128, 3, 2, 1),
                 "ResNet-18 conv3_x stem, as 1-D"),
    OperatorSpec("conv1d_128x128x256_k1s2", "conv1d", "conv1d_nlc", (1, 128, 128, 256, 1, 2, 0),
                 "ResNet-18 downsample, as 1-D"),
    OperatorSpec("conv2d_224x3x64_k7s2", "conv2d", "conv2d_nhwc", (1, 224, 224, 3, 64, 7, 2, 3),
                 "ResNet stem"),
    OperatorSpec("conv2d_56x64x64_k3", "conv2d", "conv2d_nhwc", (1, 56, 56, 64, 64, 3, 1, 1),
                 "ResNet-18 conv2_x"),
    OperatorSpec("conv2d_28x128x128_k3", "conv2d", "conv2d_nhwc", (1, 28, 28, 128, 128, 3, 1, 1),
                 "ResNet-18 conv3_x"),
    OperatorSpec("conv2d_14x256x256_k3", "conv2d", "conv2d_nhwc", (1, 14, 14, 256, 256, 3, 1, 1),
                 "ResNet-18 conv4_x"),
    OperatorSpec("conv2d_7x512x512_k3", "conv2d", "conv2d_nhwc", (1, 7, 7, 512, 512, 3, 1, 1),
                 "ResNet-18 conv5_x"),
    OperatorSpec("conv2d_56x64x256_k1", "conv2d", "conv2d_nhwc", (1, 56, 56, 64, 256, 1, 1, 0),
                 "ResNet-50 bottleneck expand"),
    OperatorSpec("conv3d_8x28x64x64_k3", "conv3d", "conv3d_ndhwc", (1, 8, 28, 28, 64, 64, 3, 1, 1),
                 "3-D ResNet-18 conv3_x (depth 8)"),
    OperatorSpec("depthwise_112x32_k3", "depthwise_conv2d", "depthwise_conv2d_nhwc", (1, 112, 112, 32, 3, 1, 1),
                 "MobileNet block 1"),
    OperatorSpec("depthwise_56x144_k3s2", "depthwise_conv2d", "depthwise_conv2d_nhwc",
                 (1, 56, 56, 144, 3, 2, 1), "MobileNetV2 block 3"),
    OperatorSpec("depthwise_14x576_k3", "depthwise_conv2d", "depthwise_conv2d_nhwc", (1, 14, 14, 576, 3, 1, 1),
                 "MobileNetV2 block 13"),
    OperatorSpec("conv2d_transpose_4x512x256", "conv2d_transpose", "conv2d_transpose_nhwc",
                 (1, 4, 4, 512, 256, 4, 2, 1), "DCGAN generator layer 1"),
    OperatorSpec("conv2d_transpose_16x128x64", "conv2d_transpose", "conv2d_transpose_nhwc",
                 (1, 16, 16, 128, 64, 4, 2, 1), "DCGAN generator layer 3"),
    OperatorSpec("norm_1x512x512", "norm", "norm_bmn", (1, 512, 512), "Frobenius norm of a 512x512 matrix"),
    OperatorSpec("softmax_1536x128", "softmax", "softmax_mn", (1536, 128), "BERT-base attention softmax (12x128 rows)"),
    OperatorSpec("softmax_2364x197", "softmax", "softmax_mn", (2364, 197), "ViT-B/16 attention softmax (12x197 rows)"),
    OperatorSpec("max_pool2d_112x64", "pool", "max_pool2d_nchw", (1, 112, 112, 64, 1), "ResNet stem max-pool"),
)

# Small shapes for the `mini` suite: every candidate builds and runs in milliseconds.
MINI_OPERATORS: tuple[OperatorSpec, ...] = (
    OperatorSpec("matmul_64x64x64", "matmul", "matmul", (64, 64, 64), "toy"),
    OperatorSpec("conv2d_14x32x32_k3", "conv2d", "conv2d_nhwc", (1, 14, 14, 32, 32, 3, 1, 1), "toy ResNet layer"),
    OperatorSpec("depthwise_28x32_k3", "depthwise_conv2d", "depthwise_conv2d_nhwc", (1, 28, 28, 32, 3, 1, 1),
                 "toy MobileNet layer"),
    OperatorSpec("softmax_64x128", "softmax", "softmax_mn", (64, 128), "toy attention softmax"),
)


def operator_workload(spec: OperatorSpec) -> Workload:
    """Create the TIR PrimFunc for one operator spec and wrap it as a workload."""
    from tvm import te
    from tvm.s_tir.meta_schedule.testing import te_workload

    func = te.create_prim_func(getattr(te_workload, spec.builder)(*spec.params))
    return Workload.from_mod(func, task_name=spec.name, family=spec.family, source="operator")
