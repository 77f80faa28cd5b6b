"""What every experiment writes: a CSV of its numbers and a PNG drawn with matplotlib.

panels() is the one figure helper the experiments share: a grid of axes, a title, grid
lines and legends, saved as a PNG when the drawing code returns without an error.
"""
import contextlib
import csv
import math

import matplotlib

matplotlib.use("Agg")  # no display: CI, the GPU machine, a terminal
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def write_csv(path, columns, rows):
    """rows: dicts with at least the keys in columns. Floats keep 6 significant digits;
    non-finite values are written as nan/inf, which float() reads back."""
    def cell(v):
        return ("%.6g" % v) if isinstance(v, float) else v
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([cell(r[c]) for c in columns])


def read_csv(path):
    """The rows of a CSV as dicts; cells that parse as numbers become floats."""
    def value(s):
        try:
            return float(s)
        except ValueError:
            return s
    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def finite(x):
    return isinstance(x, float) and math.isfinite(x)


@contextlib.contextmanager
def panels(path, title, nrows=1, ncols=1, panel_size=(4.8, 3.6), **subplots):
    """Yields a 2-D array of axes (nrows x ncols); on leaving, adds grids, legends where
    something is labelled, the title, and saves the figure to path. subplots: passed to
    plt.subplots (sharey="row", ...)."""
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(panel_size[0] * ncols, panel_size[1] * nrows), **subplots)
    try:
        yield axes
        for ax in axes.flat:
            ax.grid(alpha=0.3)
            if ax.get_legend() is None and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def epoch_axis(ax):
    """Whole-numbered ticks: epochs."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
