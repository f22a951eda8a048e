"""The attention variants shipped with the package, registered by name.

Importing this module registers `"a2os2a"` (the paper's), `"sdsa"` (SDT's)
and `"ssa"` (Spikformer's); the registry and `register_attention` live in
`spiking_self_attention.py`, beside the base class a variant subclasses.
"""

from keras_spiking_tf.layers import a2os2a  # noqa: F401  (registers "a2os2a")
from keras_spiking_tf.layers import sdsa  # noqa: F401  (registers "sdsa")
from keras_spiking_tf.layers import ssa  # noqa: F401  (registers "ssa")
from keras_spiking_tf.layers.spiking_self_attention import ATTENTIONS
from keras_spiking_tf.layers.spiking_self_attention import get_attention_class
from keras_spiking_tf.layers.spiking_self_attention import register_attention

__all__ = ["ATTENTIONS", "get_attention_class", "register_attention"]
