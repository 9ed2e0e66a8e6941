"""The benchmark's networks in plain torch (batch 1, fp32, random weights, eval mode).

The architectures follow torchvision / HuggingFace layer for layer, so the TVM tasks extracted from
them are the ones the real models give; no weights are downloaded because latencies do not depend
on weight values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

_SEED = 0  # fixed so that constant folding sees the same tensors in every process


@dataclass(frozen=True)
class NetworkSpec:
    """A network: how to build it and an example input of the benchmark's shape."""

    name: str
    build: Callable[[], nn.Module]
    example_inputs: Callable[[], tuple[torch.Tensor, ...]]
    description: str


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """Conv (no bias, 'same' padding) followed by BatchNorm, as in torchvision."""
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(cout)]


# --- ResNet ---------------------------------------------------------------------------------------


class _BasicBlock(nn.Module):
    """Two 3×3 convs with a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, width, 3, stride), nn.ReLU(inplace=True),
                                  *_conv_bn(width, width, 3))
        self.shortcut = _shortcut(cin, width * self.expansion, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class _Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1 with a residual; the stride sits on the 3×3 conv (torchvision's v1.5)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, width, 1), nn.ReLU(inplace=True),
                                  *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
                                  *_conv_bn(width, width * self.expansion, 1))
        self.shortcut = _shortcut(cin, width * self.expansion, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """Identity, or a strided 1×1 conv + BN where the shape changes."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(*_conv_bn(cin, cout, 1, stride))


class ResNet(nn.Module):
    """torchvision's ResNet for 1000 classes."""

    def __init__(self, block: type[_BasicBlock] | type[_Bottleneck], depths: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for stage, depth in enumerate(depths):
            width = 64 * 2**stage
            for i in range(depth):
                layers.append(block(cin, width, 2 if stage > 0 and i == 0 else 1))
                cin = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


# --- MobileNetV2 ----------------------------------------------------------------------------------


class _InvertedResidual(nn.Module):
    """Expand 1×1 → depthwise 3×3 → project 1×1 (linear), residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True),
                   *_conv_bn(hidden, cout, 1)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (width 1.0) for 1000 classes."""

    # (expansion, out channels, repeats, first stride), from the paper's Table 2
    CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, 32, 3, 2), nn.ReLU6(inplace=True)]
        cin = 32
        for expand, cout, repeats, stride in self.CONFIG:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += [*_conv_bn(cin, 1280, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# --- Transformers ---------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention written out (not SDPA), so TVM sees its matmuls and softmax."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.out = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.out(context.transpose(1, 2).reshape(x.shape))


def _mlp(hidden: int, inner: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden))


class BertLayer(nn.Module):
    """One BERT encoder layer: post-LN (residual, then LayerNorm) around attention and the FFN."""

    def __init__(self, hidden: int = 768, heads: int = 12, ffn: int = 3072):
        super().__init__()
        self.attention, self.norm1 = SelfAttention(hidden, heads), nn.LayerNorm(hidden, eps=1e-12)
        self.ffn, self.norm2 = _mlp(hidden, ffn), nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.ffn(x))


class ViTBlock(nn.Module):
    """One ViT encoder block: pre-LN (LayerNorm inside the residual branch)."""

    def __init__(self, hidden: int = 768, heads: int = 12, mlp: int = 3072):
        super().__init__()
        self.norm1, self.attention = nn.LayerNorm(hidden, eps=1e-6), SelfAttention(hidden, heads)
        self.norm2, self.mlp = nn.LayerNorm(hidden, eps=1e-6), _mlp(hidden, mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# --- Registry -------------------------------------------------------------------------------------


def _seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """Build with a fixed seed, in eval mode (BatchNorm uses running stats, dropout is off)."""

    def build() -> nn.Module:
        torch.manual_seed(_SEED)
        return factory().eval()

    return build


def _input(*shape: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    def example_inputs() -> tuple[torch.Tensor, ...]:
        return (torch.randn(*shape, generator=torch.Generator().manual_seed(_SEED)),)

    return example_inputs


NETWORKS: dict[str, NetworkSpec] = {
    spec.name: spec
    for spec in (
        NetworkSpec("resnet18", _seeded(lambda: ResNet(_BasicBlock, (2, 2, 2, 2))), _input(1, 3, 224, 224),
                    "ResNet-18, ImageNet 224×224"),
        NetworkSpec("resnet50", _seeded(lambda: ResNet(_Bottleneck, (3, 4, 6, 3))), _input(1, 3, 224, 224),
                    "ResNet-50 (v1.5), ImageNet 224×224"),
        NetworkSpec("mobilenet_v2", _seeded(MobileNetV2), _input(1, 3, 224, 224),
                    "MobileNetV2 (width 1.0), ImageNet 224×224"),
        NetworkSpec("bert_base_layer", _seeded(BertLayer), _input(1, 128, 768),
                    "one BERT-base encoder layer, sequence 128"),
        NetworkSpec("vit_b16_block", _seeded(ViTBlock), _input(1, 197, 768),
                    "one ViT-B/16 encoder block, 196 patches + CLS"),
    )
}
