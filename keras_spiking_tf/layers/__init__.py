"""Spiking neuron and attention layers (public API)."""

from keras_spiking_tf.layers.a2os2a import A2OS2A
from keras_spiking_tf.layers.attention_variants import ATTENTIONS
from keras_spiking_tf.layers.attention_variants import get_attention_class
from keras_spiking_tf.layers.attention_variants import register_attention
from keras_spiking_tf.layers.batch_norm import SpikingBatchNormalization
from keras_spiking_tf.layers.encoder_block import SpikingTransformerEncoderBlock
from keras_spiking_tf.layers.lif import LIF
from keras_spiking_tf.layers.lif import TernaryLIF
from keras_spiking_tf.layers.lif_cell import LIFCell
from keras_spiking_tf.layers.lif_cell import TernaryLIFCell
from keras_spiking_tf.layers.sdsa import SDSA
from keras_spiking_tf.layers.spiking_block import SpikingBlock
from keras_spiking_tf.layers.spiking_mlp import SpikingMLP
from keras_spiking_tf.layers.spiking_patch_splitting import SpikingPatchSplitting
from keras_spiking_tf.layers.spiking_self_attention import AttentionProduct
from keras_spiking_tf.layers.spiking_self_attention import SpikingSelfAttention
from keras_spiking_tf.layers.ssa import SSA
from keras_spiking_tf.layers.synapses import SynapticConv2D
from keras_spiking_tf.layers.synapses import TokenDense
from keras_spiking_tf.layers.surrogate import SURROGATES
from keras_spiking_tf.layers.surrogate import heaviside_with_surrogate
from keras_spiking_tf.layers.surrogate import surrogate_derivative
