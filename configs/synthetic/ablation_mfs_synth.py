# Stage 2 | synthetic | R18-FPN, 1/4 width | ablation 3: feature memory only
# Ablation 3: + memory-augmented feature sampling only, with softmax cross-entropy (the tracker's mean scores
# still pick which classes are drawn from the memory, 1/s).
_base_ = './loce_mask_rcnn_r18_fpn_normed_synth.py'
model = dict(
    roi_head=dict(
        bbox_head=dict(loss_cls=dict(_delete_=True, type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))))
