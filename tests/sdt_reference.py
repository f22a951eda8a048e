"""An independent PyTorch reference of the Spike-driven Transformer (SDT).

Written from design.md §1-§3 and §5 with plain `torch.nn`, *not* from this
library's Keras code, so that the conversion tests compare two independent
implementations. Like SDT it is time-major: images `(B, C, H, W)` are
repeated into `(T, B, C, H, W)`; convolutions, BatchNorm and pooling act on
`T·B` folded into the batch; only neurons carry state over `T`.

Module and parameter names follow SDT's checkpoint keys (design.md §5):
`patch_embed.proj_conv`, ..., `block.{i}.attn.q_conv`, ...,
`block.{i}.attn.talking_heads` (present, never used), `block.{i}.mlp.fc1_conv`,
..., `head`. Neurons are modules too (`patch_embed.proj_lif`,
`block.{i}.attn.shortcut_lif`, `block.{i}.attn.talking_heads_lif` (SDSA's KV
neuron), `head_lif`, ...), so a forward hook on each records its spikes.

`attention="sdsa"` is SDT's attention; `attention="a2os2a"` is this test
suite's own PyTorch A2OS2A (design.md §3.2): binary Q, K = ReLU(BN(k)), ternary V,
per head `(Q Kᵀ) V` without softmax or scaling, then a binary LIF with
threshold 0.5. Both variants have the same parameters.

Forward only: the neurons use a plain Heaviside step (no surrogate
gradient); the reference is run under `torch.no_grad()`.
"""

import torch
from torch import nn


class MultiStepLIF(nn.Module):
    """SpikingJelly's multi-step LIF node as SDT uses it (design.md §2.1, §2.3).

    decay_input=True, hard reset to `v_reset`, membrane 0 at t=0:
        H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau
        S[t] = 1 if H[t] - v_threshold >= 0 else 0
        V[t] = H[t] (1 - S[t]) + v_reset S[t]
    `ternary=True` also fires -1 where H[t] <= -v_threshold and resets where
    |S[t]| = 1. Input `(T, ...)`, output the spikes, same shape.
    """

    def __init__(self, tau=2.0, v_threshold=1.0, v_reset=0.0, ternary=False):
        super().__init__()
        self.tau = tau
        self.v_threshold = v_threshold
        self.v_reset = v_reset
        self.ternary = ternary

    def forward(self, x):
        v = torch.zeros_like(x[0])  # design.md §2.1: the membrane starts at 0
        spikes = []
        for t in range(x.shape[0]):
            h = v + (x[t] - (v - self.v_reset)) / self.tau
            s = (h - self.v_threshold >= 0).to(x.dtype)
            if self.ternary:
                s = s - (h <= -self.v_threshold).to(x.dtype)
            fired = s.abs().detach()  # detach_reset
            v = h * (1.0 - fired) + self.v_reset * fired
            spikes.append(s)
        return torch.stack(spikes)


def _fold(x):
    """`(T, B, ...)` -> `(T*B, ...)`."""
    return x.flatten(0, 1)


def _unfold(x, time_steps):
    """`(T*B, ...)` -> `(T, B, ...)`."""
    return x.reshape(time_steps, -1, *x.shape[1:])


class PatchSplitting(nn.Module):
    """SPS (design.md §3.1): four conv3x3+BN stages (D/8, D/4, D/2, D), RPE conv.

    stage 0..2: conv -> BN -> LIF -> [maxpool]
    stage 3:    conv -> BN -> [maxpool]           = x_feat (real-valued)
    RPE:        U0 = BN(conv(LIF(x_feat))) + x_feat
    MaxPool2d(3, stride 2, padding 1) where the pooling pattern has a "1".
    """

    def __init__(self, in_channels, dim, pooling):
        super().__init__()
        self.pooling = pooling
        widths = [dim // 8, dim // 4, dim // 2, dim]
        channels = in_channels
        for suffix, width in zip(("", "1", "2", "3"), widths):
            conv = nn.Conv2d(channels, width, 3, stride=1, padding=1, bias=False)
            setattr(self, f"proj_conv{suffix}", conv)
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(width))
            setattr(self, f"proj_lif{suffix}", MultiStepLIF())
            channels = width
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.rpe_conv = nn.Conv2d(dim, dim, 3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)

    def forward(self, x):
        steps = x.shape[0]
        for stage, suffix in enumerate(("", "1", "2")):
            conv = getattr(self, f"proj_conv{suffix}")
            bn = getattr(self, f"proj_bn{suffix}")
            lif = getattr(self, f"proj_lif{suffix}")
            spikes = _fold(lif(_unfold(bn(conv(_fold(x))), steps)))
            if self.pooling[stage] == "1":
                spikes = self.maxpool(spikes)
            x = _unfold(spikes, steps)
        x_feat = self.proj_bn3(self.proj_conv3(_fold(x)))
        if self.pooling[3] == "1":
            x_feat = self.maxpool(x_feat)
        spikes = _fold(self.proj_lif3(_unfold(x_feat, steps)))
        membrane = self.rpe_bn(self.rpe_conv(spikes)) + x_feat
        return _unfold(membrane, steps)


class Attention(nn.Module):
    """The attention sub-block (design.md §3.2), on membranes `(T, B, C, H, W)`.

    S = LIF(U); q, k, v = BN(conv1x1(S)); A = variant(q, k, v);
    out = U + BN(conv1x1_with_bias(A)).
    """

    def __init__(self, dim, num_heads=8, attention="sdsa", erode=False):
        super().__init__()
        if attention not in ("sdsa", "a2os2a"):
            raise ValueError(f"unsupported attention {attention!r}")
        self.attention = attention
        self.num_heads = num_heads
        self.erode = erode
        self.shortcut_lif = MultiStepLIF()
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv2d(dim, dim, 1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm2d(dim))
        # SDT holds this weight but never uses it in the forward pass.
        self.talking_heads = nn.Conv1d(num_heads, num_heads, 1, bias=False)
        if attention == "sdsa":
            self.q_lif = MultiStepLIF()
            self.k_lif = MultiStepLIF()
            self.v_lif = MultiStepLIF()
            self.talking_heads_lif = MultiStepLIF(v_threshold=0.5)  # the KV neuron
        else:
            self.q_lif = MultiStepLIF()
            self.v_lif = MultiStepLIF(ternary=True)
            self.attn_lif = MultiStepLIF(v_threshold=0.5)
        self.proj_conv = nn.Conv2d(dim, dim, 1, bias=True)
        self.proj_bn = nn.BatchNorm2d(dim)

    def _heads(self, x):
        """`(T, B, C, H, W)` -> `(T, B, heads, H*W, C/heads)`, channel
        `c = head * (C/heads) + j`."""
        steps, batch, channels, height, width = x.shape
        head_dim = channels // self.num_heads
        x = x.reshape(steps, batch, self.num_heads, head_dim, height * width)
        return x.transpose(-1, -2)

    def _erode(self, x):
        """SDT's CIFAR10-DVS `Erode`: MaxPool3d((1, 3, 3), stride 1, padding
        (0, 1, 1)) on `(T, B, C, H, W)`, i.e. a 3x3 max per step and channel."""
        if not self.erode:
            return x
        steps = x.shape[0]
        return _unfold(nn.functional.max_pool2d(_fold(x), 3, stride=1, padding=1), steps)

    def forward(self, u):
        steps, batch, channels, height, width = u.shape
        spikes = _fold(self.shortcut_lif(u))
        q = _unfold(self.q_bn(self.q_conv(spikes)), steps)
        k = _unfold(self.k_bn(self.k_conv(spikes)), steps)
        v = _unfold(self.v_bn(self.v_conv(spikes)), steps)
        if self.attention == "sdsa":
            q, k, v = self.q_lif(q), self._erode(self.k_lif(k)), self._erode(self.v_lif(v))
            kv = self._erode(k * v).sum(dim=(3, 4), keepdim=True)  # over tokens, per channel
            attended = self._erode(q * self.talking_heads_lif(kv))
        else:
            q = self._heads(self.q_lif(q))
            k = self._heads(self._erode(torch.relu(k)))
            v = self._heads(self._erode(self.v_lif(v)))
            product = (q @ k.transpose(-1, -2)) @ v  # (T, B, heads, N, d)
            product = product.transpose(-1, -2)
            attended = self._erode(self.attn_lif(product.reshape(u.shape)))
        return u + _unfold(self.proj_bn(self.proj_conv(_fold(attended))), steps)


class MLP(nn.Module):
    """U' -> LIF -> conv1x1 D->4D + BN -> LIF -> conv1x1 4D->D + BN -> + U'."""

    def __init__(self, dim, mlp_ratio=4):
        super().__init__()
        hidden = dim * mlp_ratio
        self.fc1_lif = MultiStepLIF()
        self.fc1_conv = nn.Conv2d(dim, hidden, 1, bias=True)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc2_lif = MultiStepLIF()
        self.fc2_conv = nn.Conv2d(hidden, dim, 1, bias=True)
        self.fc2_bn = nn.BatchNorm2d(dim)

    def forward(self, u):
        steps = u.shape[0]
        hidden = self.fc1_bn(self.fc1_conv(_fold(self.fc1_lif(u))))
        out = self.fc2_bn(self.fc2_conv(_fold(self.fc2_lif(_unfold(hidden, steps)))))
        return u + _unfold(out, steps)


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, attention, erode=False):
        super().__init__()
        self.attn = Attention(dim, num_heads, attention, erode)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, u):
        return self.mlp(self.attn(u))


class SDTReference(nn.Module):
    """SDT image classifier: SPS, `num_layers` blocks, spiking head (design.md §1).

    Input: normalised images `(B, C, H, W)` (NCHW), repeated over T, or, as
    SDT's forward does with a 5-D input, frame sequences `(T, B, C, H, W)`
    used as they are. Output: logits `(B, K)`. Head: mean over tokens -> LIF
    over T -> Linear at each step -> mean over T.
    """

    def __init__(
        self,
        num_layers,
        dim,
        num_classes,
        time_steps=4,
        pooling="0011",
        in_channels=3,
        num_heads=8,
        mlp_ratio=4,
        attention="sdsa",
        erode=False,
    ):
        super().__init__()
        self.time_steps = time_steps
        self.patch_embed = PatchSplitting(in_channels, dim, pooling)
        self.block = nn.ModuleList(
            [Block(dim, num_heads, mlp_ratio, attention, erode) for _ in range(num_layers)]
        )
        self.head_lif = MultiStepLIF()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images):
        if images.dim() == 5:
            x = images  # frames (T, B, C, H, W)
        else:
            x = images.unsqueeze(0).repeat(self.time_steps, 1, 1, 1, 1)
        u = self.patch_embed(x)
        for block in self.block:
            u = block(u)
        features = u.flatten(3).mean(3)  # (T, B, D): mean over the tokens
        return self.head(self.head_lif(features)).mean(0)


def randomize_(model, seed=0, calibration_batches=3, batch_size=8, image_size=32):
    """Random weights and realistic BatchNorm statistics, in place.

    Conv weights: SDT's init (normal, std 0.02); the head: PyTorch's default
    Linear init (uniform, bound 1/sqrt(D)). Biases, BN gamma and beta:
    random, so a swapped or dropped tensor changes the output. BN running
    statistics: the exact average of `calibration_batches` training-mode
    forwards on random normalised images (momentum=None), so neurons fire at
    rates like those of design.md §8 (about 3-30%). Everything is drawn from
    `seed`: the same seed gives the same model in every process. Returns
    the model in eval mode.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=generator) * std + mean

    def uniform(shape):
        return torch.rand(shape, generator=generator)

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Conv1d)):
                # timm's trunc_normal_(std=0.02) truncates at +-2 (absolute),
                # i.e. 100 std: a plain normal.
                module.weight.copy_(normal(module.weight.shape, 0.02))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias.shape, 0.02))
            elif isinstance(module, nn.Linear):
                # PyTorch's default Linear init, drawn from `generator`.
                bound = module.in_features ** -0.5
                module.weight.copy_((uniform(module.weight.shape) * 2 - 1) * bound)
                module.bias.copy_(normal(module.bias.shape, 0.1))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(uniform(module.weight.shape) * 0.6 + 0.7)
                module.bias.copy_(normal(module.bias.shape, 0.2))
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the batches
        model.train()
        in_channels = model.patch_embed.proj_conv.in_channels
        for _ in range(calibration_batches):
            model(normal((batch_size, in_channels, image_size, image_size), 1.0))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1  # SDT's value, as saved in checkpoints
    return model.eval()


def sdt_checkpoint(model, arch="sdt", epoch=309):
    """A dict shaped like SDT's saved checkpoints (design.md §5)."""
    import argparse

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return {
        "epoch": epoch,
        "arch": arch,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "args": argparse.Namespace(model=arch, time_steps=model.time_steps),
    }


def record_spikes(model):
    """Registers forward hooks on every neuron; returns `(record, handles)`.

    `record[name]` is the neuron's last output, e.g. `record["head_lif"]`
    `(T, B, D)` or `record["block.0.attn.q_lif"]` `(T, B, C, H, W)`.
    """
    record = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, MultiStepLIF):

            def hook(module, inputs, output, name=name):
                record[name] = output.detach().clone()

            handles.append(module.register_forward_hook(hook))
    return record, handles
