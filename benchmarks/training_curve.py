"""The learning curve of a training run, from the history `emotiontrack train` keeps in its checkpoint folder.

    python benchmarks/training_curve.py training/vgg-l-s0.keras.ckpt [--out reports/training/vgg-l-s0]

Writes OUT.md (one row per epoch: training loss and accuracy on augmented batches, validation loss,
accuracy and macro-F1 of the flip-averaged network, learning rate, cumulative wall time) and OUT.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", type=Path, help="OUTPUT.ckpt folder of a run (state.json or summary.json)")
    parser.add_argument("--out", type=Path, help="output path without suffix (default: reports/training/<run>)")
    args = parser.parse_args()
    source = args.checkpoints / "summary.json"
    if not source.is_file():
        source = args.checkpoints / "state.json"
    state = json.loads(source.read_text())
    history, config = state["history"], state["config"]
    run = args.checkpoints.name.removesuffix(".keras.ckpt")
    out = args.out or Path(__file__).resolve().parents[1] / "reports" / "training" / run
    command = "python benchmarks/training_curve.py " + " ".join(sys.argv[1:])
    lines = [f"# Learning curve: {run}", "", f"Command: `{command}` (from `{source}`)", "",
             "Settings: " + ", ".join(f"{k} {v}" for k, v in config.items() if k not in ("data", "output", "val_dir")),
             "", "| epoch | train loss | train acc. (augmented) | val. loss | val. acc. | val. macro-F1 | lr | hours |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for h in history:
        lines.append(f"| {h['epoch']} | {h['loss']:.4f} | {h['accuracy']:.4f} | {h['val_loss']:.4f} | "
                     f"{h['val_accuracy']:.4f} | {h['val_macro_f1']:.4f} | {h['lr']:.4g} | {h['train_seconds'] / 3600:.2f} |")
    if "validation" in state:
        v = state["validation"]
        lines += ["", f"Saved model (calibrated, float32): validation accuracy {v['accuracy']:.4f}, macro-F1 "
                  f"{v['macro_f1']:.4f}, ECE {v['ece_after_calibration']:.4f} (temperature {state['temperature']:.3f})."]
        if state["config"].get("swa_epochs"):
            lines[-1] += (f" Its weights are the average of those at the end of the last {state['config']['swa_epochs']} "
                          "epochs (`--swa-epochs`), so it is none of the rows above.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["accuracy"] for h in history], label="train (augmented batches)")
    ax.plot(epochs, [h["val_accuracy"] for h in history], label="validation accuracy")
    ax.plot(epochs, [h["val_macro_f1"] for h in history], label="validation macro-F1")
    ax.set_xlabel("epoch")
    ax.set_ylabel("score")
    ax.set_title(run)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
