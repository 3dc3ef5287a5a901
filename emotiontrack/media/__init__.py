"""Media in and out: the ffmpeg and ffprobe binaries run under a watchdog (tools), decoding frames and
images with their times (decode), encoding video (encode).
"""
