"""Converters from other frameworks' checkpoints to Keras presets."""

from keras_spiking_tf.conversion.sdt_checkpoint import convert_sdt_checkpoint
from keras_spiking_tf.conversion.sdt_checkpoint import convert_sdt_state_dict
from keras_spiking_tf.conversion.sdt_checkpoint import load_sdt_state_dict
