"""Analysis on a Ray cluster (`analyze --engine ray`): Ray Core actors that each load the models once and
analyse whole inputs (worker.py), driven from the command line's process (engine.py).

Ray is an optional extra (`pip install "emotiontrack[ray]"`); only this package imports it.
"""
