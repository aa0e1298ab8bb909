"""GE-ResNet (ImageNet-style, the paper's GE-ResNet-50): bottleneck blocks with
gather-excite after the last BatchNorm of the residual branch, before the add:

    out = bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))))
    return relu(GE(out, residual=shortcut(x)))

The add and the final ReLU run inside the GE op (GatherExcite(..., relu=True)), which then
keeps ReLU's output for backward (the next block's conv keeps it anyway) instead of the
op's input.

The stride sits on the 3x3 conv (torchvision's "ResNet v1.5"); with variant 'none' the
parameters are those of torchvision's resnet50. feat_size of each GE (needed by the
global learned gather) follows from img_size (224 -> 56, 28, 14, 7).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import conv_out, init_weights, make_ge


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride, feat_size, variant, extent, fused, ge_save="auto"):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.downsample = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
            )
        self.ge = make_ge(out_planes, variant, extent, feat_size, fused, save=ge_save)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.ge is None:
            return F.relu(out + shortcut)
        return self.ge(out, residual=shortcut, relu=True)


class GEResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), num_classes=1000, variant="theta-", extent=0, fused=True,
                 img_size=224, in_chans=3, ge_save="auto"):
        super().__init__()
        self.variant, self.extent = variant, extent
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        size = conv_out(conv_out(img_size, 7, 2, 3), 3, 2, 1)
        in_planes = 64
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                size = conv_out(size, 3, stride, 1)
                blocks.append(Bottleneck(in_planes, planes, stride, size, variant, extent, fused, ge_save))
                in_planes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(in_planes, num_classes)
        self.num_features = in_planes
        init_weights(self)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)
