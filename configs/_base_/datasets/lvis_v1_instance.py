# LVIS v1 instance segmentation: COCO 2017 images resolved from each image's coco_url under data_root.
# Multi-scale training (shorter side 640-800, step 32, longer side at most 1333), 2 images per GPU
# (x 8 GPUs = 16 per batch), repeat-factor sampling off (the paper's setting; see configs/README).
dataset_type = 'LoceLVISDataset'
data_root = 'data/lvis_v1/'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=[(1333, s) for s in range(640, 801, 32)], multiscale_mode='value',
         keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(1333, 800), flip=False,
         transforms=[
             dict(type='Resize', keep_ratio=True),
             dict(type='RandomFlip'),
             dict(type='Normalize', **img_norm_cfg),
             dict(type='Pad', size_divisor=32),
             dict(type='ImageToTensor', keys=['img']),
             dict(type='Collect', keys=['img']),
         ]),
]
# loce_meta='required': the data must have been checked by `loce data prep --root data/lvis_v1` (it writes
# annotations/loce_meta.json: class names in label order, frequency groups, counts); training stops early
# otherwise, naming that command.
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=2,
    train=dict(type=dataset_type, ann_file=data_root + 'annotations/lvis_v1_train.json', img_prefix=data_root,
               pipeline=train_pipeline, loce_meta='required'),
    val=dict(type=dataset_type, ann_file=data_root + 'annotations/lvis_v1_val.json', img_prefix=data_root,
             pipeline=test_pipeline, loce_meta='required'),
    test=dict(type=dataset_type, ann_file=data_root + 'annotations/lvis_v1_val.json', img_prefix=data_root,
              pipeline=test_pipeline, loce_meta='required'))
evaluation = dict(interval=24, metric=['bbox', 'segm'])
