"""GE-WideResNet for CIFAR (Zagoruyko & Komodakis), pre-activation blocks, with
gather-excite on every residual branch (the seed's model is WRN-16-8, GE-θ⁻, global).

Block (docs/DESIGN.md §1):  out = conv2(relu(bn2(conv1(relu(bn1(x))))));  return GE(out, residual=shortcut)
where shortcut is x when the block keeps its width and stride, else a 1x1 conv of
relu(bn1(x)). The add is done by the GE op itself (fused) or right after it (eager).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import conv_out, init_weights, make_ge


class PreActBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, feat_size, variant, extent, fused, drop_rate=0.0,
                 ge_save="auto"):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.shortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
        self.ge = make_ge(out_planes, variant, extent, feat_size, fused, save=ge_save)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.equal_in_out else self.shortcut(pre)
        if self.ge is None:
            return out + shortcut
        return self.ge(out, residual=shortcut)


class GEWideResNet(nn.Module):
    """WRN-depth-width with GE. depth = 6n + 4 (n blocks per stage); widths 16w, 32w, 64w."""

    def __init__(self, depth=16, width=8, num_classes=10, variant="theta-", extent=0, fused=True,
                 img_size=32, in_chans=3, drop_rate=0.0, ge_save="auto"):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if width < 1:
            raise ValueError(f"WRN width must be >= 1, got {width}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.depth, self.width, self.variant, self.extent = depth, width, variant, extent
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        size = img_size
        stages = []
        in_planes = widths[0]
        for i, stride in enumerate((1, 2, 2)):
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                size = conv_out(size, 3, s, 1)
                blocks.append(PreActBlock(in_planes, widths[i + 1], s, size, variant, extent, fused, drop_rate,
                                          ge_save))
                in_planes = widths[i + 1]
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        self.num_features = in_planes
        init_weights(self)

    def forward(self, x):
        x = self.conv1(x)
        x = self.block3(self.block2(self.block1(x)))
        x = F.relu(self.bn(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)
