"""What an analysis writes: the timeline table and Parquet file (timeline), smoothing (smooth), per-face
summaries and crops (summary), the annotated video (draw, video), charts, HTML reports, and the atomic
files and staged publishing every writer goes through (files, publish).
"""
