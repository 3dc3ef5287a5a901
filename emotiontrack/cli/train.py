"""`emotiontrack train`: train the emotion CNN, checkpointing every epoch, then calibrate and save it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import TextColumn

from emotiontrack.cli.options import non_negative_float, non_negative_int, positive_float, positive_int, probability
from emotiontrack.cli.progress import progress_bars
from emotiontrack.cli.signals import clean_up_on_signals

if TYPE_CHECKING:
    from emotiontrack.model.settings import TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    from emotiontrack.model.settings import ARCHITECTURES, TrainConfig

    d = TrainConfig(data=Path())
    p = sub.add_parser("train", help="train the emotion CNN on a folder-per-emotion dataset",
                       description="Train the emotion CNN, checkpointing every epoch, then calibrate and save it.")
    p.add_argument("data", type=Path, metavar="DATA_DIR",
                   help="dataset: a folder or zip holding train/<emotion>/ and validation/<emotion>/ "
                        "(or only <emotion>/ folders when --val-dir is given)")
    p.add_argument("-o", "--output", type=Path, default=d.output,
                   help="model file to write (default: %(default)s); checkpoints go to OUTPUT.ckpt/")
    p.add_argument("--val-dir", type=Path, help="validation split (<emotion>/ folders), if not inside DATA_DIR")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default=d.architecture, dest="architecture",
                   help="network size (see emotiontrack/model/network.py; default: %(default)s)")
    p.add_argument("--block-dropout", type=probability, default=d.block_dropout,
                   help="dropout after each block's pooling (default: the architecture's own, 0.1 for vgg-l and "
                        "vgg-m, 0.25 for vgg-s)")
    _recipe_options(p.add_argument_group("recipe"), d)
    _data_options(p.add_argument_group("data and framing"), d)
    _start_options(p.add_argument_group("starting point, teachers and the saved model"), d)


def _recipe_options(p: argparse._ActionsContainer, d: TrainConfig) -> None:
    """Epochs, optimiser, schedule, regularisation."""
    from emotiontrack.model.settings import OPTIMIZERS

    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="epochs to train (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="images per step (default: %(default)s)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help="sgd (Nesterov momentum 0.9) or adamw (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=d.learning_rate, dest="learning_rate",
                   help="peak learning rate after the warm-up; cosine decay to zero follows (default: %(default)s)")
    p.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay,
                   help="weight decay of the convolution and dense weights (default: %(default)s)")
    p.add_argument("--label-smoothing", type=probability, default=d.label_smoothing,
                   help="share of each target spread over all classes (default: %(default)s)")
    p.add_argument("--class-weight-power", type=non_negative_float, default=d.class_weight_power,
                   help="loss weight per class = (largest class / class size) ** POWER; 0 ignores imbalance "
                        "(default: %(default)s)")
    p.add_argument("--mixup", type=non_negative_float, default=d.mixup,
                   help="mix pairs of images with Beta(A, A) weights; 0 turns it off (default: %(default)s)")
    p.add_argument("--swa-epochs", type=non_negative_int, default=d.swa_epochs,
                   help="stochastic weight averaging: run the last N epochs at --swa-lr and save the average of "
                        "their weights (BatchNorm measured again); 0 turns it off (default: %(default)s)")
    p.add_argument("--swa-lr", type=positive_float, default=d.swa_lr,
                   help="the constant learning rate of the averaged epochs; the cosine decays to it "
                        "(default: %(default)s)")


def _data_options(p: argparse._ActionsContainer, d: TrainConfig) -> None:
    """Aligned views, the landmark cache, seed and subset."""
    from emotiontrack.model.settings import LANDMARK_CACHE

    p.add_argument("--aligned-views", type=probability, default=d.aligned_views,
                   help="share of training faces shown as analyze crops them from video, aligned on their own "
                        "landmarks (found once with MTCNN, ~20 min for FER2013, then cached) (default: %(default)s)")
    p.add_argument("--scene-views", type=probability, default=d.scene_views,
                   help="share of the aligned views in which the face belongs to a scene: pasted through a soft "
                        "ellipse onto a photograph, then degraded as video degrades it (default: %(default)s)")
    p.add_argument("--cache-dir", type=Path, default=LANDMARK_CACHE,
                   help="where the training faces' landmarks are cached (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed for init, shuffling, augmentation (default: %(default)s)")
    p.add_argument("--limit", type=positive_int, help="train on at most this many images (quick trials)")


def _start_options(p: argparse._ActionsContainer, d: TrainConfig) -> None:
    """Initial weights, distillation, the mirror image, precision, resuming."""
    p.add_argument("--init", type=Path, metavar="CHECKPOINT",
                   help="start from the weights of an earlier run's OUTPUT.ckpt/last.pt (fine-tuning, a second "
                        "learning-rate cycle) instead of random weights")
    p.add_argument("--teacher", type=Path, action="append", default=[], dest="teachers", metavar="MODEL",
                   help="distil this saved model (repeat for an ensemble): its probabilities on the training faces, "
                        "averaged over the teachers and computed once, make up --distill-weight of each target")
    p.add_argument("--distill-weight", type=probability, default=d.distill_weight,
                   help="share of each training target taken from the teachers (default: %(default)s)")
    p.add_argument("--no-flip-average", action="store_false", dest="flip_average",
                   help="save a model that classifies each face once, not averaged with its mirror image (half the cost)")
    p.add_argument("--fp32", action="store_false", dest="bf16",
                   help="train in float32 (default: bf16 autocast where the CPU has bf16 instructions, much faster "
                        "there; float32 elsewhere)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run whose checkpoint is in OUTPUT.ckpt/ (its settings are kept; "
                        "run after the last epoch, it only calibrates and saves the model again)")


def run(args: argparse.Namespace, console: Console) -> int:
    from emotiontrack.model.checkpoint import load_checkpoint_config
    from emotiontrack.model.train import TrainConfig, train
    from emotiontrack.stages.detect import LANDMARK_MIN_FACE, MTCNNDetector

    clean_up_on_signals()  # checkpoints are written from here on
    if args.resume:
        config = dataclasses.replace(load_checkpoint_config(args.output), flip_average=args.flip_average)
    else:
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names and k != "teachers"},
                             teachers=tuple(args.teachers))
    with progress_bars(console, TextColumn("{task.fields[metrics]}"), transient=True) as progress:
        task = progress.add_task("epoch", total=None, metrics="")

        def on_batch(step: int, steps: int, logs: dict) -> None:
            progress.update(task, completed=step, total=steps,
                            metrics=f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f}")

        def on_epoch(epoch: int, logs: dict) -> None:
            progress.console.print(
                f"epoch {epoch + 1}/{config.epochs}: loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} "
                f"val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f} "
                f"val_macro_f1 {logs['val_macro_f1']:.4f}"
                + (f" val_aligned_acc {logs['val_aligned_accuracy']:.4f}" if "val_aligned_accuracy" in logs else ""),
                soft_wrap=True)
            progress.update(task, description=f"epoch {epoch + 2}", completed=0)

        summary = train(config, MTCNNDetector(min_face=LANDMARK_MIN_FACE), resume=args.resume, on_batch=on_batch, on_epoch=on_epoch, cache_dir=args.cache_dir)
    console.print(f"wrote {summary['model']} (temperature {summary['temperature']:.3f})", soft_wrap=True)
    return 0
