"""Off-board STEGO training: frozen DINO backbones, the feature cache, KNN positives and the head.

Sub-packages import torch; this module does not, so ``import training`` stays cheap.
"""
