"""The attention switch: one name selects A2OS2A, SDSA or SSA."""

from keras_spiking_tf.layers.a2os2a import A2OS2A
from keras_spiking_tf.layers.sdsa import SDSA
from keras_spiking_tf.layers.ssa import SSA

ATTENTIONS = {"a2os2a": A2OS2A, "sdsa": SDSA, "ssa": SSA}


def get_attention_class(name):
    """The attention class for `"a2os2a"`, `"sdsa"` or `"ssa"`."""
    try:
        return ATTENTIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown attention {name!r}; choose one of {list(ATTENTIONS)}."
        ) from None
