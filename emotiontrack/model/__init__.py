"""The emotion CNN: its architecture and torch training network (network), the Keras product file
(keras_model, the only module that imports Keras), running that file with torch alone (torchnet),
folder-per-emotion datasets (dataset), training (train) and scoring (evaluate).
"""
