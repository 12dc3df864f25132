# Stage 2 | synthetic | R18-FPN, 1/4 width | ablation 1: plain fine-tune, no memory
# Ablation 1 (the paper's baseline): plain fine-tune from the same base checkpoint with the same schedule, seed
# and trainable parts as LOCE, but softmax cross-entropy and random RoI sampling only (no feature memory).
# The RoI head stays a LoceRoIHead with the memory off, so the mean-score tracker still records the scores a
# plain fine-tune gives (`loce inspect scores`); with cross-entropy those scores do not change training.
_base_ = './loce_mask_rcnn_r18_fpn_normed_synth.py'
model = dict(
    roi_head=dict(
        memory=dict(enabled=False),
        bbox_head=dict(loss_cls=dict(_delete_=True, type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))))
custom_hooks = []
