"""``uwstego pretrain``: DINO self-distillation of a ViT backbone on the vehicle's own footage.

One idea per module (docs/pretrain.md gives the equations and defaults):
settings, schedules, loss (centring and sharpening), head, network (multi-crop wrapper),
augment (multi-crop augmentation), frames (the enhanced frame cache), optim (parameter groups,
clipping, last-layer freezing, EMA), checkpoint (the official DINO checkpoint layout), monitor
(label-free collapse checks), probe (patch k-means mIoU), loop and cli.
"""
