"""Pictures of a spiking network: firing rates, energy, a spike raster."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_firing_rates(rates, path):
    """Bars per neuron layer, one colour per time step."""
    names = list(rates["layers"])
    steps = len(rates["layers"][names[0]]["per_step"])
    width = 0.8 / steps
    figure, axis = plt.subplots(figsize=(max(8, 0.45 * len(names)), 4.5))
    positions = np.arange(len(names))
    for t in range(steps):
        values = [rates["layers"][n]["per_step"][t] for n in names]
        axis.bar(positions + t * width, values, width, label=f"t = {t}")
    axis.set_xticks(positions + 0.4 - width / 2, names, rotation=75, fontsize=7)
    axis.set_ylabel("firing rate")
    axis.set_title(f"Firing rate per neuron layer (mean {rates['mean']:.3f})")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_energy(report, path):
    """Horizontal bars of energy per product, MAC and AC coloured apart."""
    rows = report.rows
    figure, axis = plt.subplots(figsize=(8, max(4, 0.22 * len(rows))))
    energies = [r["energy_pj"] / 1e6 for r in rows]
    colours = ["tab:red" if r["input_kind"] == "real" else "tab:blue" for r in rows]
    axis.barh(np.arange(len(rows)), energies, color=colours)
    axis.set_yticks(np.arange(len(rows)), [r["layer"] for r in rows], fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("energy per image (uJ); red: MAC (real input), blue: AC (spikes)")
    axis.set_title(f"Estimated energy: {report.energy_mj:.4f} mJ per image")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_spike_raster(spikes, path, title, max_neurons=256):
    """Raster of one sample's spikes `(T, ...)`: neurons x time steps."""
    steps = spikes.shape[0]
    flat = spikes.reshape(steps, -1)[:, :max_neurons]
    figure, axis = plt.subplots(figsize=(8, 4))
    for t in range(steps):
        for sign, colour in ((1, "black"), (-1, "tab:red")):
            neurons = np.nonzero(flat[t] == sign)[0]
            axis.scatter(neurons, np.full(len(neurons), t), s=40, c=colour, marker="|")
    axis.set_yticks(range(steps))
    axis.set_ylabel("time step")
    axis.set_xlabel(f"neuron (first {flat.shape[1]})")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
