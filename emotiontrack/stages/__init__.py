"""The analysis stages, in the order frames meet them: detect faces (detect), decide when to look at the
whole frame and when to follow known faces (schedule), give each face one id over time (track), crop
each face like the model's training faces (align, crops) and classify its emotion (classify).
"""
