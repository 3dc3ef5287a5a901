"""Measure the canonical face geometry of a training set: where MTCNN puts the five landmarks of its faces.

    python benchmarks/geometry.py ../shared/datasets/fer2013.zip [--sample 1000]

Prints the JSON statistics of `align.geometry_of` (what `emotiontrack train` stores in the model).
"""

import argparse
import json
from pathlib import Path

import torch

from emotiontrack.model.calibrate import GEOMETRY_SAMPLE, training_geometry
from emotiontrack.model.dataset import load_train_val
from emotiontrack.stages.detect import LANDMARK_MIN_FACE, MTCNNDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset with train/<emotion>/ and validation/<emotion>/")
    parser.add_argument("--seed", type=int, default=0, help="which training faces are sampled")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_split, _ = load_train_val(args.data)
    _, stats = training_geometry(train_split, MTCNNDetector(min_face=LANDMARK_MIN_FACE), args.seed)
    print(json.dumps({"sample": GEOMETRY_SAMPLE, **stats}, indent=2))


if __name__ == "__main__":
    main()
