"""Parity with the OFFICIAL Meta-SpikeFormer (Spike-Driven Transformer V2)
code, through the checkpoint converter, on random weights.

    python benchmarks/official_meta_spikeformer_parity.py \\
        --official_dir /path/to/Spike-Driven-Transformer-V2 \\
        --json benchmarks/results/official_meta_spikeformer_parity.jsonl

Needs what the official code imports, which are not dependencies of this
library: `spikingjelly==0.0.0.0.12` (its README's version; the
`spikingjelly.clock_driven` API), `einops`, and `timm` + `torchinfo`. On a
CPU-only PyTorch, timm cannot be imported (it needs torchvision, whose PyPI
wheels are built for CUDA PyTorch): `--stub_unused_imports` then replaces
the official file's timm/torchinfo imports, in the temporary copy, by
PyTorch's `trunc_normal_` (the one the model uses, for its random Linear
init) and `None` for the ones it does not use at these settings (`DropPath`
at drop-path rate 0, `to_2tuple`, `register_model`, `_cfg`,
`create_model`, `torchinfo`). Nothing is downloaded: `--official_dir` is a
checkout the user provides.

What it does:

1. Copies `classification/models.py` of `--official_dir` into a temporary
   directory, with every `backend="cupy"` of `MultiStepLIFNode` replaced by
   `backend="torch"` (SpikingJelly's CPU path), and imports it.
2. Builds the official factory `metaspikformer_{size}` with `kd=True`,
   `T = --time_steps`, 1000 classes; gives every BatchNorm a random affine
   (gamma, beta) and the heads random biases, so that every tensor of the
   checkpoint matters; calibrates the BatchNorm running statistics
   (cumulative average) on `--calibration_batches` batches of random
   images in train mode; then eval mode. SpikingJelly neurons keep their
   membrane between calls, so `functional.reset_net` runs before each one.
3. Saves it in the official training script's format
   (`{"model", "optimizer", "epoch", "scaler", "args"}`) and converts it
   with `kst-convert-sdt` into `sdt_v2_{size}_imagenet`.
4. Runs both on the same `--batch` random images (uniform 0..255, then
   `(x / 255 - mean) / std` with the preset's ImageNet statistics): the
   official model on NCHW, ours (`MetaSpikeFormerImageClassifier.call`,
   the preprocessor's output) on the same tensor in NHWC. Reports the
   largest |logit difference| (eval output `(head + head_kd) / 2`), top-1
   agreement, the wall time of one forward pass of each (same threads),
   and, with `--spikes`, every neuron's spike agreement (neurons paired in
   call order; the pairing is checked by shape and printed) and the first
   neuron that differs.
5. With `--float64` (TensorFlow backend), the same comparison with both
   models in float64, the float32 weights cast exactly (`float64` in the
   JSON line).

Appends one JSON line to `--json`.

Measured (8-384, T = 4, 2 images, benchmarks/results/
official_meta_spikeformer_parity.jsonl): in float64 the logits are equal
to the last bit and all 77 neurons' spikes identical. In float32 the first
47 neurons (to block3.3) are identical; the residual stream entering
block3.4 differs by 7e-6 (summation order), one membrane lands within
2.4e-7 of the threshold (0.99999988 vs 1.00000024) and flips a single
spike of `block3.4.attn.head_lif`, and the flip spreads through the last
blocks (89-100 % agreement per neuron there; logits within 7e-2 at a
logit std of 3e-2): the full-depth float32 behaviour that
docs/guides/sdt-checkpoints.md describes for SDT v1.
"""

import argparse
import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The official file's lines `--stub_unused_imports` replaces, and by what.
STUBBED_IMPORTS = {
    "import torchinfo": "torchinfo = None",
    "from timm.models.layers import to_2tuple, trunc_normal_, DropPath":
        "from torch.nn.init import trunc_normal_\nto_2tuple = DropPath = None",
    "from timm.models.registry import register_model": "register_model = None",
    "from timm.models.vision_transformer import _cfg": "_cfg = None",
    "from timm.models import create_model": "create_model = None",
}
CUPY_BACKEND = re.compile(r'backend\s*=\s*"cupy"')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official_dir", required=True,
                        help="Checkout of BICLab/Spike-Driven-Transformer-V2 "
                             "(holds classification/models.py).")
    parser.add_argument("--size", default="8_384", choices=("8_384", "8_512", "8_768"))
    parser.add_argument("--time_steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2, help="Images compared.")
    parser.add_argument("--calibration_batches", type=int, default=2)
    parser.add_argument("--calibration_batch_size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads for PyTorch and TensorFlow alike.")
    parser.add_argument("--spikes", action="store_true",
                        help="Also compare every neuron's spikes.")
    parser.add_argument("--float64", action="store_true",
                        help="Also compare both in float64 (TensorFlow backend), the same "
                             "weights cast: float32 rounding then cannot flip a spike.")
    parser.add_argument("--stub_unused_imports", action="store_true",
                        help="Replace the official timm/torchinfo imports (see the docstring).")
    parser.add_argument("--work_dir", default=None,
                        help="Keep the checkpoint and converted preset here (default: a "
                             "temporary directory, removed afterwards).")
    parser.add_argument("--json", default=None, help="Append the result as one JSON line.")
    args = parser.parse_args(argv)
    models_py = Path(args.official_dir) / "classification" / "models.py"
    if not models_py.is_file():
        parser.error(f"--official_dir {args.official_dir!r} has no classification/models.py; "
                     "pass the root of a Spike-Driven-Transformer-V2 checkout.")
    for name in ("time_steps", "batch", "calibration_batches", "calibration_batch_size",
                 "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    return args


def patched_official_module(official_dir, scratch, stub_unused_imports):
    """The official `models.py`, copied into `scratch` with the CPU neuron
    backend (and the stubs), imported as a module."""
    source = (Path(official_dir) / "classification" / "models.py").read_text()
    source, count = CUPY_BACKEND.subn('backend="torch"', source)
    if count == 0:
        raise ValueError("The official models.py has no backend=\"cupy\" to patch; "
                         "this script was written for the upstream file (SpikingJelly "
                         "MultiStepLIFNode with backend=\"cupy\").")
    if stub_unused_imports:
        for line, replacement in STUBBED_IMPORTS.items():
            if line not in source:
                raise ValueError(f"--stub_unused_imports: the official models.py has no "
                                 f"line {line!r}; run without the flag.")
            source = source.replace(line, replacement)
    path = Path(scratch) / "official_meta_spikeformer_models.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        raise ImportError(
            f"The official models.py needs {error.name!r}: install spikingjelly==0.0.0.0.12 "
            "and einops; for timm/torchinfo install them or pass --stub_unused_imports."
        ) from error
    return module, count


def random_images(seed, batch, size, mean, std):
    """Uniform 0..255 images normalised as the preprocessor does: NHWC float32."""
    raw = np.random.default_rng(seed).uniform(0.0, 255.0, (batch, size, size, 3))
    return ((raw / 255.0 - np.asarray(mean)) / np.asarray(std)).astype("float32")


def official_model(module, size, time_steps, seed, calibration, image_size, mean, std):
    import torch
    from spikingjelly.clock_driven import functional

    torch.manual_seed(seed)
    model = getattr(module, f"metaspikformer_{size}")(kd=True)
    model.T = time_steps
    generator = torch.Generator().manual_seed(seed + 1)
    batchnorms = [m for m in model.modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in batchnorms:
            bn.weight.uniform_(0.7, 1.3, generator=generator)
            bn.bias.normal_(0.0, 0.2, generator=generator)
            bn.momentum = None  # cumulative average over the calibration batches
        for head in (model.head, model.head_kd):
            head.bias.normal_(0.0, 0.02, generator=generator)
        model.train()
        batches, batch_size = calibration
        for index in range(batches):
            x = random_images(seed + 100 + index, batch_size, image_size, mean, std)
            functional.reset_net(model)
            model(torch.from_numpy(np.transpose(x, (0, 3, 1, 2))))
    for bn in batchnorms:
        bn.momentum = 0.1
    functional.reset_net(model)
    return model.eval(), len(batchnorms)


def save_official_checkpoint(model, path, size, time_steps):
    import torch

    torch.save({
        "model": model.state_dict(),
        "optimizer": None,
        "epoch": 0,
        "scaler": None,
        "args": argparse.Namespace(
            model=f"metaspikformer_{size}", model_mode="ms", time_steps=time_steps, kd=True,
            nb_classes=1000, input_size=224),
    }, path)


def convert(checkpoint, preset, output_dir):
    """`kst-convert-sdt`, the installed tool (or its module)."""
    script = Path(sys.executable).parent / "kst-convert-sdt"
    command = ([str(script)] if script.exists()
               else [sys.executable, "-m", "keras_spiking_tf.cli.convert_sdt_checkpoint"])
    start = time.perf_counter()
    result = subprocess.run(
        [*command, "--checkpoint", str(checkpoint), "--preset", preset,
         "--output_dir", str(output_dir)],
        capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"kst-convert-sdt failed (exit {result.returncode}):\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout, seconds


def run_official(model, images, record):
    """Logits and (with `record`) the spikes of every neuron in call order."""
    import torch
    from spikingjelly.clock_driven import functional
    from spikingjelly.clock_driven.neuron import MultiStepLIFNode

    spikes, handles = [], []
    if record:
        for name, module in model.named_modules():
            if isinstance(module, MultiStepLIFNode):
                def hook(module, inputs, output, name=name):
                    array = output.detach().numpy()
                    steps, batch, channels = array.shape[:3]
                    # (T, B, C, ...) -> (B, T, positions, C), the Keras layout.
                    array = array.reshape(steps, batch, channels, -1).transpose(1, 0, 3, 2)
                    spikes.append((name, array != 0))
                handles.append(module.register_forward_hook(hook))
    functional.reset_net(model)
    try:
        start = time.perf_counter()
        with torch.no_grad():
            logits = model(torch.from_numpy(np.transpose(images, (0, 3, 1, 2)))).numpy()
        seconds = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    return logits, spikes, seconds


def keras_neuron_paths(model):
    from keras_spiking_tf.layers import LIF

    paths = {}

    def walk(layer, path):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            child_path = f"{path}/{child.name}" if path else child.name
            if isinstance(child, LIF):
                paths[id(child)] = child_path
            else:
                walk(child, child_path)

    walk(model, "")
    return paths


def run_ours(model, images, record):
    import keras
    from keras_spiking_tf.layers import LIF

    spikes = []
    original_call = LIF.call
    paths = keras_neuron_paths(model)

    def recording_call(self, x):
        output = original_call(self, x)
        array = np.asarray(keras.ops.convert_to_numpy(output))
        spikes.append((paths[id(self)],
                       array.reshape(array.shape[0], array.shape[1], -1, array.shape[-1]) != 0))
        return output

    if record:
        LIF.call = recording_call
    try:
        start = time.perf_counter()
        logits = np.asarray(keras.ops.convert_to_numpy(model(images, training=False)))
        seconds = time.perf_counter() - start
    finally:
        LIF.call = original_call
    return logits, spikes, seconds


def spike_agreement(official, ours):
    """Per neuron pair (call order) the fraction of equal spikes."""
    if len(official) != len(ours):
        raise ValueError(f"The official model ran {len(official)} neurons, ours {len(ours)}: "
                         f"official {[n for n, _ in official]}, ours {[n for n, _ in ours]}.")
    rows = []
    for (name, expected), (path, got) in zip(official, ours):
        if expected.shape != got.shape:
            raise ValueError(f"Neuron pairing in call order broke at official {name} "
                             f"{expected.shape} vs ours {path} {got.shape}.")
        rows.append({"official": name, "ours": path,
                     "agreement": float(np.mean(expected == got)),
                     "rate": float(np.mean(expected))})
    return rows


def compare(reference, ours, images, spikes):
    """Logit difference, top-1 agreement and wall times of one forward pass
    each; with `spikes`, every neuron's agreement (a second, recorded pass)."""
    official_logits, _, official_seconds = run_official(reference, images, record=False)
    our_logits, _, our_seconds = run_ours(ours, images, record=False)
    difference = np.abs(official_logits - our_logits)
    result = {
        "dtype": str(official_logits.dtype),
        "max_abs_logit_diff": float(difference.max()),
        "mean_abs_logit_diff": float(difference.mean()),
        "logit_std": float(official_logits.std()),
        "top1_official": official_logits.argmax(-1).tolist(),
        "top1_ours": our_logits.argmax(-1).tolist(),
        "top1_agreement": float(np.mean(official_logits.argmax(-1) == our_logits.argmax(-1))),
        "official_forward_s": round(official_seconds, 2),
        "ours_forward_s": round(our_seconds, 2),
    }
    if not spikes:
        return result
    _, official_spikes, _ = run_official(reference, images, record=True)
    _, our_spikes, _ = run_ours(ours, images, record=True)
    rows = spike_agreement(official_spikes, our_spikes)
    for row in rows:
        print(f"{result['dtype']}  {row['agreement']:.6f}  rate {row['rate']:.3f}  "
              f"{row['official']}  <->  {row['ours']}")
    differing = [index for index, row in enumerate(rows) if row["agreement"] < 1.0]
    total = sum(s.size for _, s in official_spikes)
    equal = sum(int(np.sum(a == b)) for (_, a), (_, b) in zip(official_spikes, our_spikes))
    result.update({
        "neurons": len(rows),
        "neurons_identical": len(rows) - len(differing),
        "first_differing_neuron": (
            None if not differing else dict(rows[differing[0]], call_index=differing[0],
                                            spikes_differing=int(np.sum(
                                                official_spikes[differing[0]][1]
                                                != our_spikes[differing[0]][1])))),
        "spike_agreement_overall": equal / total,
        "spike_agreement_min": min(row["agreement"] for row in rows),
        "neurons_at_least_99_9": sum(row["agreement"] >= 0.999 for row in rows),
        "spike_rate_range": [min(r["rate"] for r in rows), max(r["rate"] for r in rows)],
    })
    return result


def float64_copy(model):
    """The same classifier in float64 (TensorFlow backend), its float32
    weights cast exactly."""
    import keras
    from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier

    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"--float64 needs KERAS_BACKEND=tensorflow (Keras maps float64 to "
                         f"float32 on {keras.backend.backend()}).")
    copy64 = MetaSpikeFormerImageClassifier(
        MetaSpikeFormerImageClassifier.backbone_cls.from_config(
            dict(model.backbone.get_config(), dtype="float64")),
        model.num_classes, kd=model.kd, head_dtype="float64", dtype="float64")
    if [w.path for w in copy64.weights] != [w.path for w in model.weights]:
        raise ValueError("The float64 copy's weights do not line up with the model's.")
    for target, source in zip(copy64.weights, model.weights):
        target.assign(np.asarray(keras.ops.convert_to_numpy(source), "float64"))
    return copy64


def main(argv=None):
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    import keras
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from keras_spiking_tf.models.meta_spikeformer import MetaSpikeFormerImageClassifier
    from keras_spiking_tf.models.meta_spikeformer.meta_spikeformer_presets import dataset_of

    preset = f"sdt_v2_{args.size}_imagenet"
    data = dataset_of(preset)
    image_size = data["image_shape"][0]
    scratch = Path(args.work_dir or tempfile.mkdtemp(prefix="official_v2_parity_"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        module, patched = patched_official_module(args.official_dir, scratch,
                                                  args.stub_unused_imports)
        start = time.perf_counter()
        reference, num_bn = official_model(
            module, args.size, args.time_steps, args.seed,
            (args.calibration_batches, args.calibration_batch_size),
            image_size, data["mean"], data["std"])
        build_seconds = time.perf_counter() - start
        checkpoint = scratch / f"metaspikformer_{args.size}_random.pth"
        save_official_checkpoint(reference, checkpoint, args.size, args.time_steps)
        converted = scratch / "converted"
        if converted.exists():
            shutil.rmtree(converted)
        tool_output, convert_seconds = convert(checkpoint, preset, converted)
        print(tool_output.strip())
        ours = MetaSpikeFormerImageClassifier.from_preset(str(converted))
        if ours.backbone.time_steps != args.time_steps:
            raise ValueError(f"The converted preset runs T={ours.backbone.time_steps}, the "
                             f"official model T={args.time_steps}: pass --time_steps "
                             f"{ours.backbone.time_steps}.")

        images = random_images(args.seed + 7, args.batch, image_size, data["mean"], data["std"])
        result = {
            "benchmark": "official_meta_spikeformer_parity",
            "official_factory": f"metaspikformer_{args.size}",
            "preset": preset,
            "time_steps": args.time_steps,
            "kd": True,
            "images": args.batch,
            "image_size": image_size,
            "seed": args.seed,
            "calibration": f"{args.calibration_batches}x{args.calibration_batch_size} "
                           "random images, train mode, cumulative BN average",
            "spikingjelly": _version("spikingjelly"),
            "torch": torch.__version__,
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "cupy_backends_patched": patched,
            "stubbed_imports": bool(args.stub_unused_imports),
            "batchnorms": num_bn,
            "threads": args.threads,
            "official_build_calibrate_s": round(build_seconds, 2),
            "convert_s": round(convert_seconds, 2),
            **compare(reference, ours, images, args.spikes),
        }
        if args.float64:
            result["float64"] = compare(copy.deepcopy(reference).double(), float64_copy(ours),
                                        images.astype("float64"), args.spikes)
        print(json.dumps(result, indent=1))
        if args.json:
            with open(args.json, "a") as file:
                file.write(json.dumps(result) + "\n")
        return result
    finally:
        if args.work_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _version(distribution):
    from importlib.metadata import version

    return version(distribution)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
