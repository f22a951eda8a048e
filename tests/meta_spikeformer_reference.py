"""An independent PyTorch reference of Meta-SpikeFormer (Spike-Driven
Transformer V2), written from SPEC §10 with plain `torch.nn`, *not* from this
library's Keras code, so that the parity tests compare two independent
implementations. Time-major like the official code: images `(B, C, H, W)`
are repeated into `(T, B, C, H, W)`; convolutions and BatchNorm act on `T·B`
folded into the batch; only neurons carry state over `T`.

Module and parameter names are the official checkpoint's keys (SPEC §10):
`downsample1_1.encode_conv`, `ConvBlock1_1.0.Conv.pwconv1`,
`block3.0.attn.q_conv.0.body.1.bn` (the BN-and-pad), `block3.0.mlp.fc1_conv`
(a `Conv1d`), `head`, `head_kd`, ... Neurons are modules too
(`block3.0.attn.head_lif`, `lif`, ...), so a forward hook records their spikes
(`sdt_reference.record_spikes`).

`attention="sdt_v2"` is the official attention: binary Q, K, V,
`attn_lif_{0.5}(Q (Kᵀ V) · 0.125)`; `attention="a2os2a"`: binary Q,
K = ReLU(k), ternary V, `attn_lif_{0.5}(Q (Kᵀ V))`. `pad_with_zeros`,
`scale` and `attn_threshold` exist to show that the tests notice each of
these details (a deliberately wrong reference must disagree).

Forward only, under `torch.no_grad()`.
"""

import re

import torch
from torch import nn

from sdt_reference import MultiStepLIF


def _fold(x):
    return x.flatten(0, 1)


def _unfold(x, time_steps):
    return x.reshape(time_steps, -1, *x.shape[1:])


class BNAndPad(nn.Module):
    """BatchNorm, then a 1-pixel border holding BN(0) per channel:
    `beta - running_mean · gamma / sqrt(running_var + eps)` (zeros with
    `pad_with_zeros`, the deliberate mistake)."""

    def __init__(self, channels, pad_with_zeros=False):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.pad_with_zeros = pad_with_zeros

    def forward(self, x):
        y = self.bn(x)
        bn = self.bn
        border = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
        if self.pad_with_zeros:
            border = torch.zeros_like(border)
        n, c, h, w = y.shape
        out = border.view(1, c, 1, 1).expand(n, c, h + 2, w + 2).clone()
        out[:, :, 1:-1, 1:-1] = y
        return out


class RepConv(nn.Module):
    """`body`: 1x1 conv -> BNAndPad -> [depthwise 3x3, no padding; 1x1 conv; BN]."""

    def __init__(self, c_in, c_out, pad_with_zeros=False):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_in, 1, bias=False),
            BNAndPad(c_in, pad_with_zeros),
            nn.Sequential(
                nn.Conv2d(c_in, c_in, 3, padding=0, groups=c_in, bias=False),
                nn.Conv2d(c_in, c_out, 1, bias=False),
                nn.BatchNorm2d(c_out),
            ),
        )

    def forward(self, x):
        return self.body(x)


class Attention(nn.Module):
    """On membranes `(T, B, C, H, W)`: S = head_lif(U); q, k, v = BN(RepConv(S));
    per head (channel c = head · d + j, token n = h · W + w) the variant's
    product; attn_lif; proj = BN(RepConv(·)). Returns the update (the block
    adds U)."""

    def __init__(self, dim, num_heads=8, attention="sdt_v2", scale=0.125,
                 attn_threshold=0.5, pad_with_zeros=False):
        super().__init__()
        if attention not in ("sdt_v2", "a2os2a"):
            raise ValueError(f"unsupported attention {attention!r}")
        self.attention = attention
        self.num_heads = num_heads
        self.scale = scale if attention == "sdt_v2" else 1.0
        self.head_lif = MultiStepLIF()
        for name in ("q", "k", "v", "proj"):
            setattr(self, f"{name}_conv",
                    nn.Sequential(RepConv(dim, dim, pad_with_zeros), nn.BatchNorm2d(dim)))
        self.q_lif = MultiStepLIF()
        if attention == "sdt_v2":
            self.k_lif = MultiStepLIF()
            self.v_lif = MultiStepLIF()
        else:
            self.v_lif = MultiStepLIF(ternary=True)
        self.attn_lif = MultiStepLIF(v_threshold=attn_threshold)

    def _heads(self, x):
        """`(T, B, C, H, W)` -> `(T, B, heads, N, d)`."""
        steps, batch, channels, height, width = x.shape
        x = x.reshape(steps, batch, self.num_heads, channels // self.num_heads, height * width)
        return x.transpose(-1, -2)

    def forward(self, u):
        steps = u.shape[0]
        s = _fold(self.head_lif(u))
        q, k, v = (_unfold(getattr(self, f"{n}_conv")(s), steps) for n in ("q", "k", "v"))
        q = self._heads(self.q_lif(q))
        if self.attention == "sdt_v2":
            k, v = self._heads(self.k_lif(k)), self._heads(self.v_lif(v))
        else:
            k, v = self._heads(torch.relu(k)), self._heads(self.v_lif(v))
        product = (q @ (k.transpose(-1, -2) @ v)) * self.scale  # (T, B, heads, N, d)
        product = product.transpose(-1, -2).reshape(u.shape)
        attended = self.attn_lif(product)
        return _unfold(self.proj_conv(_fold(attended)), steps)


class MLP(nn.Module):
    """Tokens `(T, B, C, N)`: LIF -> Conv1d(bias) -> BN1d -> LIF -> Conv1d(bias) -> BN1d."""

    def __init__(self, dim, mlp_ratio=4):
        super().__init__()
        hidden = dim * mlp_ratio
        self.fc1_lif = MultiStepLIF()
        self.fc1_conv = nn.Conv1d(dim, hidden, 1)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc2_lif = MultiStepLIF()
        self.fc2_conv = nn.Conv1d(hidden, dim, 1)
        self.fc2_bn = nn.BatchNorm1d(dim)

    def forward(self, u):
        steps = u.shape[0]
        tokens = u.flatten(3)
        hidden = _unfold(self.fc1_bn(self.fc1_conv(_fold(self.fc1_lif(tokens)))), steps)
        out = self.fc2_bn(self.fc2_conv(_fold(self.fc2_lif(hidden))))
        return _unfold(out, steps).reshape(u.shape)


class Block(nn.Module):
    """`U' = U + Attn(U)`, `out = U' + MLP(U')`."""

    def __init__(self, dim, num_heads, mlp_ratio, **attention):
        super().__init__()
        self.attn = Attention(dim, num_heads, **attention)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, u):
        u = u + self.attn(u)
        return u + self.mlp(u)


class SepConv(nn.Module):
    """LIF -> 1x1 (no bias) -> BN -> LIF -> depthwise 7x7 pad 3 -> 1x1 -> BN."""

    def __init__(self, dim, expansion=2):
        super().__init__()
        hidden = dim * expansion
        self.lif1 = MultiStepLIF()
        self.pwconv1 = nn.Conv2d(dim, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.lif2 = MultiStepLIF()
        self.dwconv = nn.Conv2d(hidden, hidden, 7, padding=3, groups=hidden, bias=False)
        self.pwconv2 = nn.Conv2d(hidden, dim, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, u):
        steps = u.shape[0]
        hidden = _unfold(self.bn1(self.pwconv1(_fold(self.lif1(u)))), steps)
        out = self.bn2(self.pwconv2(self.dwconv(_fold(self.lif2(hidden)))))
        return _unfold(out, steps)


class ConvBlock(nn.Module):
    """`U' = U + SepConv(U)`; `out = U' + BN(conv3x3(LIF(BN(conv3x3(LIF(U'))))))`."""

    def __init__(self, dim, mlp_ratio=4):
        super().__init__()
        self.Conv = SepConv(dim)
        self.lif1 = MultiStepLIF()
        self.conv1 = nn.Conv2d(dim, dim * mlp_ratio, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim * mlp_ratio)
        self.lif2 = MultiStepLIF()
        self.conv2 = nn.Conv2d(dim * mlp_ratio, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, u):
        steps = u.shape[0]
        u = u + self.Conv(u)
        hidden = _unfold(self.bn1(self.conv1(_fold(self.lif1(u)))), steps)
        return u + _unfold(self.bn2(self.conv2(_fold(self.lif2(hidden)))), steps)


class Downsampling(nn.Module):
    """[LIF ->] Conv2d(k, stride, padding, bias) -> BN."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, first_layer=False):
        super().__init__()
        self.encode_conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding)
        self.encode_bn = nn.BatchNorm2d(c_out)
        if not first_layer:
            self.encode_lif = MultiStepLIF()

    def forward(self, u):
        steps = u.shape[0]
        if hasattr(self, "encode_lif"):
            u = self.encode_lif(u)
        return _unfold(self.encode_bn(self.encode_conv(_fold(u))), steps)


class MetaSpikeFormerReference(nn.Module):
    """The classifier: stem, conv stages, transformer stages, spiking head.

    `embed_dims` `[C0, C1, C2, C3]`; `block3`, `block4` MS_Blocks in the
    transformer stages (6 and 2 in the official model); one MS_ConvBlock in
    ConvBlock1_1, 1_2, 2_1, 2_2 as in the official model. Input: normalised
    images `(B, C, H, W)`. Output: logits `(B, K)`; with `kd`,
    `(head + head_kd) / 2`, each averaged over T.
    """

    def __init__(self, embed_dims, num_classes, time_steps=4, block3=6, block4=2,
                 in_channels=3, num_heads=8, mlp_ratio=4, kd=False, **attention):
        super().__init__()
        c0, c1, c2, c3 = embed_dims
        self.time_steps = time_steps
        self.kd = kd
        self.downsample1_1 = Downsampling(in_channels, c0 // 2, 7, 2, 3, first_layer=True)
        self.ConvBlock1_1 = nn.ModuleList([ConvBlock(c0 // 2, mlp_ratio)])
        self.downsample1_2 = Downsampling(c0 // 2, c0, 3, 2, 1)
        self.ConvBlock1_2 = nn.ModuleList([ConvBlock(c0, mlp_ratio)])
        self.downsample2 = Downsampling(c0, c1, 3, 2, 1)
        self.ConvBlock2_1 = nn.ModuleList([ConvBlock(c1, mlp_ratio)])
        self.ConvBlock2_2 = nn.ModuleList([ConvBlock(c1, mlp_ratio)])
        self.downsample3 = Downsampling(c1, c2, 3, 2, 1)
        self.block3 = nn.ModuleList(
            [Block(c2, num_heads, mlp_ratio, **attention) for _ in range(block3)])
        self.downsample4 = Downsampling(c2, c3, 3, 1, 1)
        self.block4 = nn.ModuleList(
            [Block(c3, num_heads, mlp_ratio, **attention) for _ in range(block4)])
        self.lif = MultiStepLIF()
        self.head = nn.Linear(c3, num_classes)
        if kd:
            self.head_kd = nn.Linear(c3, num_classes)

    def head_logits(self, images):
        """`(head logits, head_kd logits or None)`, each `(B, K)`."""
        u = images.unsqueeze(0).repeat(self.time_steps, 1, 1, 1, 1)
        stages = [self.downsample1_1, *self.ConvBlock1_1, self.downsample1_2,
                  *self.ConvBlock1_2, self.downsample2, *self.ConvBlock2_1,
                  *self.ConvBlock2_2, self.downsample3, *self.block3,
                  self.downsample4, *self.block4]
        for stage in stages:
            u = stage(u)
        spikes = self.lif(u.flatten(3).mean(3))  # (T, B, C3)
        logits = self.head(spikes).mean(0)
        return logits, (self.head_kd(spikes).mean(0) if self.kd else None)

    def forward(self, images):
        logits, kd_logits = self.head_logits(images)
        return logits if kd_logits is None else (logits + kd_logits) / 2


def randomize_(model, seed=0, calibration_batches=3, batch_size=4, image_size=32,
               qkv_beta=1.2):
    """Random weights and calibrated BatchNorm statistics, in place.

    Convolutions: normal, std 1/sqrt(fan-in) (BN follows each, so only the
    direction matters); conv biases and Linear layers random. BN gamma
    uniform [0.7, 1.3], beta normal(0.3, 0.3) so that the neurons fire at a
    few to tens of percent; running statistics are the exact average of
    `calibration_batches` training-mode forwards on random images
    (momentum=None), so that BN(0) (the RepConv border) is far from 0.
    The BNs before the q, k, v neurons get beta `qkv_beta` instead, so that
    Q, K, V fire at a rate (~30 %) at which `0.125 Q (Kᵀ V)` reaches the
    attention neuron's threshold in a small model.
    Everything is drawn from `seed`. Returns the model in eval mode.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=generator) * std + mean

    def uniform(shape):
        return torch.rand(shape, generator=generator)

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Conv1d)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(normal(module.weight.shape, fan_in ** -0.5))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias.shape, 0.1))
            elif isinstance(module, nn.Linear):
                bound = module.in_features ** -0.5
                module.weight.copy_((uniform(module.weight.shape) * 2 - 1) * bound)
                module.bias.copy_(normal(module.bias.shape, 0.1))
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                module.weight.copy_(uniform(module.weight.shape) * 0.6 + 0.7)
                mean = qkv_beta if re.search(r"attn\.[qkv]_conv\.1$", name) else 0.3
                module.bias.copy_(normal(module.bias.shape, 0.3, mean=mean))
                module.reset_running_stats()
                module.momentum = None
        model.train()
        in_channels = model.downsample1_1.encode_conv.in_channels
        for _ in range(calibration_batches):
            model(normal((batch_size, in_channels, image_size, image_size), 1.0))
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                module.momentum = 0.1
    return model.eval()
