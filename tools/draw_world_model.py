#!/usr/bin/env python3
"""Draw the reference world model's architecture (reference_model/README.md) with matplotlib.

    python tools/draw_world_model.py                      # writes reference_model/architecture.png
    python tools/draw_world_model.py --out /tmp/wm.png

Boxes and arrows only; the parts and their names follow reference_model/world_model.py and network.py.
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEFAULT_OUT = os.path.join(ROOT, "reference_model", "architecture.png")

INPUT, ENCODER, STATE, HEAD, TRAIN, NOTE = "#e8eef7", "#dbe9d8", "#fdf1d6", "#f6dcdc", "#eeeeee", "#ffffff"


def box(ax, x0, x1, yc, h, text, color, dashed=False, size=11, weight="normal"):
    """A rounded box from x0 to x1 centred on yc; returns its (left, right, bottom, top, x centre)."""
    ax.add_patch(FancyBboxPatch((x0, yc - h / 2), x1 - x0, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                facecolor=color, edgecolor="#555555", linewidth=1.2,
                                linestyle=(0, (4, 3)) if dashed else "solid"))
    ax.text((x0 + x1) / 2, yc, text, ha="center", va="center", fontsize=size, weight=weight, linespacing=1.35)
    return {"l": x0, "r": x1, "b": yc - h / 2, "t": yc + h / 2, "x": (x0 + x1) / 2, "y": yc}


def arrow(ax, start, end, dashed=False, label=None, label_at=None, color="#333333", ha="center", rad=0.0):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16, linewidth=1.4, color=color,
                                 linestyle=(0, (4, 3)) if dashed else "solid",
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))
    if label:
        x, y = label_at or ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        ax.text(x, y, label, ha=ha, va="center", fontsize=9.5, color="#333333", style="italic")


def draw(out: str) -> None:
    fig = plt.figure(figsize=(16, 7), dpi=100, facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 20)
    ax.set_ylim(0, 7)
    ax.axis("off")

    ax.text(0.25, 6.75, "Reference compiler world model: action-conditioned latent dynamics",
            fontsize=14, weight="bold", va="center")

    top, mid, bottom = 5.55, 3.45, 1.05
    # actions row
    acts = box(ax, 0.25, 2.75, top, 1.05, "actions $a_1 \\ldots a_T$\n(kind + Step numbers,\ntrace_state.py)", INPUT)
    aenc = box(ax, 3.25, 5.95, top, 1.05, "action encoder\nkind embedding\n+ MLP(Step numbers)", ENCODER)
    codes = box(ax, 8.55, 14.35, top, 0.8, "action codes $e(a_1), e(a_2), \\ldots, e(a_T)$", ENCODER)
    hw = box(ax, 15.25, 19.75, top, 1.05, "hardware features\n(from the record's descriptor)", INPUT)
    arrow(ax, (acts["r"], top), (aenc["l"], top))
    arrow(ax, (aenc["r"], top), (codes["l"], top))

    # program row: encoder, slots, transition chain, head, score
    prog = box(ax, 0.25, 2.75, mid, 1.05, "initial program\n(the task's blocks,\nprogram.py)", INPUT)
    senc = box(ax, 3.25, 5.95, mid, 1.05, "slot encoder\nMLP per block\n(loops, accesses)", ENCODER)
    z0 = box(ax, 6.35, 8.15, mid, 1.05, "slots $z_0$\nblock 1..N\n+ root + derived", STATE)
    t1 = box(ax, 8.55, 10.15, mid, 1.05, "$T(z_0, a_1)$", STATE, size=12)
    t2 = box(ax, 10.55, 12.15, mid, 1.05, "$T(z_1, a_2)$", STATE, size=12)
    ax.text(12.45, mid, "$\\cdots$", ha="center", va="center", fontsize=16)
    tt = box(ax, 12.75, 14.35, mid, 1.05, "$T(z_{T-1}, a_T)$", STATE, size=12)
    head = box(ax, 15.0, 17.75, mid, 1.05, "ranking head: MLP of\n$z_T$, mean slots,\npooled actions, hardware",
               HEAD, size=10)
    score = box(ax, 18.3, 19.75, mid, 0.8, "score", HEAD, weight="bold")
    arrow(ax, (prog["r"], mid), (senc["l"], mid))
    arrow(ax, (senc["r"], mid), (z0["l"], mid))
    arrow(ax, (z0["r"], mid), (t1["l"], mid))
    arrow(ax, (t1["r"], mid), (t2["l"], mid))
    arrow(ax, (t2["r"], mid), (12.25, mid))
    arrow(ax, (12.6, mid), (tt["l"], mid))
    arrow(ax, (tt["r"], mid), (head["l"], mid), label="$z_T$", label_at=((tt["r"] + head["l"]) / 2, mid + 0.22))
    arrow(ax, (head["r"], mid), (score["l"], mid))
    for t, name in ((t1, "$a_1$"), (t2, "$a_2$"), (tt, "$a_T$")):
        arrow(ax, (t["x"], codes["b"]), (t["x"], t["t"]), label=name, label_at=(t["x"] + 0.12, 4.5), ha="left")
    arrow(ax, (codes["r"], codes["b"] + 0.15), (head["l"] + 0.35, head["t"]), label="mean of the codes",
          label_at=(15.3, 4.62), ha="left")
    arrow(ax, (17.2, hw["b"]), (17.2, head["t"]))
    ax.text(12.45, 2.45, "transition $T$: one GRUCell shared over steps reads ($a_t$, addressed slot)\n"
            "and writes a residual update back into that slot;\nno program is rebuilt or re-encoded",
            ha="left", va="center", fontsize=9.5, color="#333333")

    # training-only consistency branch
    dec = box(ax, 8.55, 11.15, bottom, 0.95, "decoder\nMLP", TRAIN, dashed=True)
    real = box(ax, 12.75, 17.45, bottom, 0.95, "per-store features of the real intermediate\n"
               "program (TVM replay; mean + max over stores)", TRAIN, dashed=True, size=10)
    arrow(ax, (t1["x"] - 0.3, 1.95), (dec["x"] - 0.3, dec["t"]), dashed=True, color="#777777")
    arrow(ax, (t2["x"] - 0.3, 1.95), (dec["x"] + 0.6, dec["t"]), dashed=True, color="#777777")
    ax.plot([t1["x"] - 0.3, t1["x"] - 0.3], [t1["b"], 1.95], color="#777777", lw=1.4, ls=(0, (4, 3)))
    ax.plot([t2["x"] - 0.3, t2["x"] - 0.3], [t2["b"], 1.95], color="#777777", lw=1.4, ls=(0, (4, 3)))
    ax.text(6.35, 1.8, "$z_t$ after 3 prefixes\nof a per-task subsample", ha="left", va="center", fontsize=9.5,
            color="#555555", style="italic")
    arrow(ax, (dec["r"], bottom), (real["l"], bottom), dashed=True, color="#777777",
          label="consistency loss", label_at=((dec["r"] + real["l"]) / 2, bottom + 0.22))
    ax.text(real["r"] + 0.2, bottom, "training only", ha="left", va="center", fontsize=10.5, color="#777777",
            weight="bold")

    box(ax, 0.25, 5.95, bottom, 0.95, "prefix cache (scoring): shared prefixes rolled once\n"
        "rows of a task with equal action prefixes share a state", NOTE, size=10)

    fig.savefig(out, dpi=100, facecolor="white")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="PNG to write (default: reference_model/architecture.png)")
    draw(parser.parse_args().out)


if __name__ == "__main__":
    main()
