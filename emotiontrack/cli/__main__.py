"""`python -m emotiontrack.cli`: the same as the `emotiontrack` console script."""

from emotiontrack.cli import run

run()
