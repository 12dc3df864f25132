# Stage 1 | synthetic | R18-FPN, 1/4 width | the quickstart's base, sized for CPUs
# Stage 1 (base) on the built-in synthetic long-tailed data (`loce data synth`), sized for a CPU:
# ResNet-18 at 1/4 width (base_channels=16), 64-channel FPN, 128 px images, 4 images per batch,
# plain softmax CE, normed mask head (7x7 RoIs upsampled to 14x14 masks: objects are 15-45 px here),
# 128 sampled RoIs per image. Measured here: about 0.5 s per iteration of 4 images on 2 cores.
_base_ = [
    '../_base_/models/mask_rcnn_r50_fpn_normed.py', '../_base_/schedules/schedule_2x.py',
    '../_base_/default_runtime.py'
]
num_classes = 40
fpn = 64
roi_layer = dict(type='RoIAlign', output_size=7, sampling_ratio=0)
model = dict(
    backbone=dict(depth=18, base_channels=16, frozen_stages=-1, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=fpn),
    rpn_head=dict(in_channels=fpn, feat_channels=fpn),
    roi_head=dict(
        bbox_roi_extractor=dict(roi_layer=roi_layer, out_channels=fpn),
        bbox_head=dict(in_channels=fpn, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(roi_layer=roi_layer, out_channels=fpn),
        mask_head=dict(num_convs=2, in_channels=fpn, conv_out_channels=fpn, num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=500),
        rcnn=dict(sampler=dict(num=128), mask_size=14)),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=500), rcnn=dict(max_per_img=100)))

dataset_type = 'LoceLVISDataset'
data_root = 'work/quickstart/data/'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(128, 128), flip=False,
         transforms=[
             dict(type='Resize', keep_ratio=True),
             dict(type='RandomFlip'),
             dict(type='Normalize', **img_norm_cfg),
             dict(type='Pad', size_divisor=32),
             dict(type='ImageToTensor', keys=['img']),
             dict(type='Collect', keys=['img']),
         ]),
]
data = dict(
    samples_per_gpu=4,
    workers_per_gpu=1,
    train=dict(type=dataset_type, ann_file=data_root + 'annotations/lvis_v1_train.json', img_prefix=data_root,
               pipeline=train_pipeline),
    val=dict(type=dataset_type, ann_file=data_root + 'annotations/lvis_v1_val.json', img_prefix=data_root,
             pipeline=test_pipeline),
    test=dict(type=dataset_type, ann_file=data_root + 'annotations/lvis_v1_val.json', img_prefix=data_root,
              pipeline=test_pipeline))
# 6 epochs of 150 iterations (600 images, 4 per batch), lr 0.02 with a 100-iteration warm-up, steps at 4 and 5:
# the 2x recipe's shape, shortened to fit the quickstart's budget on 2 CPU cores.
optimizer = dict(lr=0.02)
lr_config = dict(warmup_iters=100, step=[4, 5])
runner = dict(type='EpochBasedRunner', max_epochs=6)
checkpoint_config = dict(interval=1, max_keep_ckpts=2)
log_config = dict(interval=25)
evaluation = dict(interval=100)  # evaluation runs through `loce eval`, not inside training
dist_params = dict(backend='gloo')
