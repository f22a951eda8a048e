"""Estimated energy of a spiking network, the way SNN papers report it (design.md §7).

Per product (conv, dense, attention product) and image:

    FLOPs  = multiply-accumulates per time step if the operand were dense
    MACs   = T x FLOPs                   if the streamed operand is real
    SOPs   = rate x T x FLOPs            if it is spikes (rate = non-zero
                                         fraction; a ternary -1 counts once)
    energy = e_mac x MACs + e_ac x SOPs  (45 nm: 4.6 pJ and 0.9 pJ)

BatchNorm is taken as folded into the preceding weights at inference, and
the neurons' own updates are not counted, as in SDT and the paper.

Every model family is counted by the same rule, from the recorded operands;
for Meta-SpikeFormer (SPEC §10) that means:

- a depthwise convolution has `H_out W_out C k k` FLOPs per image and step
  (`C` channels, `k x k` kernel); SepConv's `dwconv` sees spikes (SOPs),
  and the `pwconv2` after it sees the depthwise output, real (MACs);
- the encoding layer `downsample1_1/encode_conv` sees real pixels: MACs,
  `T x` its FLOPs like the first family's first convolution;
- a `RepConv` counts as its three convolutions as they run: `conv1x1` on
  spikes (SOPs), `depthwise` and `pointwise` on real values (MACs). Its
  `BatchNormAndPad` border holds the constant `BN(0)`, neither a spike nor
  a zero, and the interior holds `BN(conv1x1(x))`, real: the depthwise
  convolution is real x real at every tap, border included (MACs over all
  `H_out W_out C 9`). (Re-parameterised into one 3x3 convolution of the
  zero-padded spikes, `RepConv.batch_norm_folds` explains how, it would be
  SOPs, of 4.5 times the FLOPs for `C_in = C_out`; that is not the graph
  this package runs or exports.)
- the attention products come from the variant's `products()`, the same
  registry for every family.
"""

import dataclasses

from keras_spiking_tf import validation
from keras_spiking_tf.analysis.operations import network_products
from keras_spiking_tf.analysis.recording import check_model_and_images


@dataclasses.dataclass
class EnergyReport:
    """Per-layer rows and per-image totals.

    Attributes:
        rows: one dict per product with `layer`, `operation`, `input_kind`,
            `flops`, `input_firing_rate`, `sops`, `macs`, `energy_pj`.
        macs, sops: totals per image.
        energy_mj: total energy per image in millijoules.
        time_steps: `T`.
    """

    rows: list
    macs: float
    sops: float
    energy_mj: float
    time_steps: int

    def table(self):
        """The report as a fixed-width text table."""
        header = f"{'layer':58s} {'input':8s} {'rate':>6s} {'MFLOPs':>9s} {'MMACs':>9s} {'MSOPs':>9s} {'uJ':>8s}"
        lines = [header, "-" * len(header)]
        for row in self.rows:
            lines.append(
                f"{row['layer'][-58:]:58s} {row['input_kind']:8s} "
                f"{row['input_firing_rate']:6.3f} {row['flops'] / 1e6:9.3f} "
                f"{row['macs'] / 1e6:9.3f} {row['sops'] / 1e6:9.3f} {row['energy_pj'] / 1e6:8.3f}"
            )
        lines.append("-" * len(header))
        lines.append(
            f"total per image: {self.macs / 1e6:.3f} M MACs, {self.sops / 1e6:.3f} M SOPs, "
            f"{self.energy_mj:.4f} mJ (T={self.time_steps})"
        )
        return "\n".join(lines)


def energy_report(model, images, e_mac_pj=4.6, e_ac_pj=0.9):
    """Estimates the energy per image of `model` on `images`.

    Args:
        model: a classifier or backbone built from this package's layers.
        images: a batch of `call` inputs (preprocessed images); firing rates
            are averaged over it. Raw-looking pixels (integers, or values
            beyond what the model's normalisation reaches) get an
            `InputWarning` (`input_checks.check_call_inputs`).
        e_mac_pj, e_ac_pj: energy of one multiply-accumulate / accumulate.

    Example:

    ```python
    report = energy_report(model, model.preprocessor(raw_images))
    print(report.table()); report.energy_mj
    ```
    """
    check_model_and_images(model, images, "energy_report()")
    for name, value in (("e_mac_pj", e_mac_pj), ("e_ac_pj", e_ac_pj)):
        validation.check_number(name, value, minimum=0.0, exclusive_minimum=True)
    return _energy_report(model, images, e_mac_pj, e_ac_pj)


def _energy_report(model, images, e_mac_pj=4.6, e_ac_pj=0.9):
    products, time_steps = network_products(model, images)
    rows = []
    for product in products:
        if product.input_kind == "real":
            macs, sops = float(time_steps * product.flops), 0.0
        else:
            macs = 0.0
            sops = product.input_firing_rate * time_steps * product.flops
        rows.append(
            {
                "layer": product.layer,
                "operation": product.operation,
                "input_kind": product.input_kind,
                "flops": product.flops,
                "input_firing_rate": product.input_firing_rate,
                "sops": sops,
                "macs": macs,
                "energy_pj": e_mac_pj * macs + e_ac_pj * sops,
            }
        )
    macs = sum(r["macs"] for r in rows)
    sops = sum(r["sops"] for r in rows)
    energy_pj = sum(r["energy_pj"] for r in rows)
    return EnergyReport(rows=rows, macs=macs, sops=sops, energy_mj=energy_pj * 1e-9, time_steps=time_steps)


def energy_summary(model, images, description):
    """The energy figures a preset's metadata and model card record:
    `energy_mj`, `macs`, `sops` (per image), `time_steps`,
    `mean_firing_rate` (over every neuron) and `images` (`description`,
    what the figures were averaged over). `images` are `call` inputs, checked
    as in `energy_report`.

    Example:

    ```python
    energy_summary(model, model.preprocessor(x_val[:32]), "32 validation images")
    ```
    """
    from keras_spiking_tf.analysis.firing_rates import unchecked_firing_rates

    check_model_and_images(model, images, "energy_summary()")
    validation.check_string("description", description)
    report = _energy_report(model, images)
    return {
        "energy_mj": report.energy_mj,
        "macs": report.macs,
        "sops": report.sops,
        "time_steps": report.time_steps,
        "mean_firing_rate": unchecked_firing_rates(model, images)["mean"],
        "images": description,
    }
