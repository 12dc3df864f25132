# Stage 2 | synthetic | R18-FPN, 1/4 width | box-only plain fine-tune (Faster R-CNN)
# The box-only counterpart of ablation_plain_ft_synth: loce_faster_rcnn_r18_fpn_synth's schedule, seed and trainable
# parts (fc_cls, fc_reg, RPN) with softmax cross-entropy and random RoI sampling only (memory off, no memory init).
_base_ = './loce_faster_rcnn_r18_fpn_synth.py'
model = dict(
    roi_head=dict(
        memory=dict(enabled=False),
        bbox_head=dict(loss_cls=dict(_delete_=True, type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))))
custom_hooks = []
