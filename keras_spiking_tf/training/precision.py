"""The dtype policy that trains fastest on this machine (`--mixed_precision auto`).

`mixed_bfloat16` (bfloat16 compute, float32 weights; neuron backward passes
and BatchNorm statistics stay float32) where the backend runs bfloat16
natively and measurably faster (docs/guides/performance.md), else `float32`:

| where                                        | policy          |
|----------------------------------------------|-----------------|
| TPU                                          | mixed_bfloat16  |
| NVIDIA GPU, compute capability >= 8.0        | mixed_bfloat16  |
| CPU with AVX512_BF16 or AMX                  | mixed_bfloat16  |
| anything else                                | float32         |

Measured on this project's CPU (AVX512_BF16, `st_2_256_cifar10`, batch 32):
mixed_bfloat16 trains 1.7x faster than float32 on TensorFlow, 1.1x on JAX.

Example:

```python
policy = fastest_dtype_policy()   # "mixed_bfloat16" on this project's CPU
```
"""

import keras

BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bfloat16(cpuinfo_path="/proc/cpuinfo"):
    """Whether the CPU has bfloat16 dot-product instructions (x86 flags)."""
    try:
        with open(cpuinfo_path, encoding="utf-8") as file:
            flags = next((line for line in file if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in BFLOAT16_CPU_FLAGS)


def accelerator():
    """`("tpu" | "gpu" | "cpu", compute capability or None)` of the backend's first device."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        capability = getattr(device, "compute_capability", None)
        return device.platform, (float(capability) if capability else None)
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return "gpu", major + minor / 10
        return "cpu", None
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return "tpu", None
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        major, minor = tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability", (0, 0)
        )
        return "gpu", major + minor / 10
    return "cpu", None


def fastest_dtype_policy():
    """`"mixed_bfloat16"` or `"float32"`, by the table in the module docstring."""
    platform, capability = accelerator()
    if platform == "tpu":
        return "mixed_bfloat16"
    if platform == "gpu":
        return "mixed_bfloat16" if (capability or 0) >= 8.0 else "float32"
    return "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"


def resolve_dtype_policy(requested, recipe_policy):
    """The policy a run uses: `requested` unless `"auto"`/`None`; then the
    recipe's if it names one; else `fastest_dtype_policy()`."""
    if requested not in (None, "auto"):
        return requested
    return recipe_policy or fastest_dtype_policy()
