"""Which products of a network need a multiplier (the paper's central claim)."""

from keras_spiking_tf.analysis.operations import network_products
from keras_spiking_tf.analysis.recording import check_model_and_images


def addition_only_audit(model, images):
    """Lists every product with its operand kinds and whether it needs
    multiplication.

    A product of a spike operand ({0,1} or {-1,0,1}) with anything is a
    (signed) accumulation; only real x real needs a multiplier. In A2OS2A,
    `Q K^T` and `(.) V` are therefore addition-only: Q binary, V ternary;
    in SSA and SDSA (binary Q, K, V) as well. The attention products come
    from the attention registry's `products()`, in either model family. In
    Meta-SpikeFormer the products on real values are the stem's
    convolution, SepConv's `pwconv2` (after the depthwise convolution) and
    each RepConv's depthwise and pointwise convolutions (after
    `BatchNormAndPad`; `analysis/energy.py` says why).

    Args:
        model: a classifier or backbone built from this package's layers.
        images: a batch of `call` inputs (preprocessed images); operand
            kinds are read off the values of this forward pass. Raw-looking
            pixels get an `InputWarning` (`input_checks.check_call_inputs`).

    Returns:
        A list of dicts with `layer`, `operation`, `operands`, `input_kind`,
        `other_kind`, `needs_multiplication`.

    Example:

    ```python
    [r["layer"] for r in addition_only_audit(model, x) if r["needs_multiplication"]]
    # ['patch_embed/proj_conv']  (the first conv sees real pixels)
    ```
    """
    check_model_and_images(model, images, "addition_only_audit()")
    products, _ = network_products(model, images)
    return [
        {
            "layer": p.layer,
            "operation": p.operation,
            "operands": p.operands,
            "input_kind": p.input_kind,
            "other_kind": p.other_kind,
            "needs_multiplication": p.needs_multiplication,
        }
        for p in products
    ]
