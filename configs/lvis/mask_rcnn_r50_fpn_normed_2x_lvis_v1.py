# Stage 1 | LVIS v1 | R50-FPN | the paper's base: normed mask head, multi-scale, 2x
# Stage 1 (base): Mask R-CNN R50-FPN, normed mask head, multi-scale, 2x, plain softmax CE, LVIS v1.
_base_ = [
    '../_base_/models/mask_rcnn_r50_fpn_normed.py', '../_base_/datasets/lvis_v1_instance.py',
    '../_base_/schedules/schedule_2x.py', '../_base_/default_runtime.py'
]
