# Stage 2 | synthetic | R18-FPN, 1/4 width | ablation 2: equilibrium loss only
# Ablation 2: + equilibrium loss only (no memory-augmented feature sampling).
_base_ = './loce_mask_rcnn_r18_fpn_normed_synth.py'
model = dict(roi_head=dict(memory=dict(enabled=False)))
custom_hooks = []
