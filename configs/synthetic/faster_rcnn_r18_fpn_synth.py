# Stage 1 | synthetic | R18-FPN, 1/4 width | box-only base (Faster R-CNN)
# Stage 1 (base), boxes only: the quickstart's Mask R-CNN base (mask_rcnn_r18_fpn_normed_synth) without the mask
# branch, for box-only data (`loce data synth --no-masks`, or your own COCO export without segmentation).
_base_ = './mask_rcnn_r18_fpn_normed_synth.py'
model = dict(type='LoceFasterRCNN', roi_head=dict(mask_roi_extractor=None, mask_head=None))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='Resize', img_scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
]
data = dict(train=dict(pipeline=train_pipeline))
evaluation = dict(metric=['bbox'])
