"""Spike analysis: firing rates, energy estimate, addition-only audit."""

from keras_spiking_tf.analysis.audit import addition_only_audit
from keras_spiking_tf.analysis.energy import EnergyReport
from keras_spiking_tf.analysis.energy import energy_report
from keras_spiking_tf.analysis.energy import energy_summary
from keras_spiking_tf.analysis.firing_rates import calibrate_batch_norm
from keras_spiking_tf.analysis.firing_rates import firing_rates
from keras_spiking_tf.analysis.recording import record_forward
from keras_spiking_tf.analysis.callbacks import FiringRateMonitor
