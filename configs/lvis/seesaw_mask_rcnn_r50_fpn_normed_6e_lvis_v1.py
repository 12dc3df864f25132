# Stage 2 | LVIS v1 | R50-FPN | baseline: Seesaw loss fine-tune
# Baseline, stage 2: Seesaw loss as a decoupled 6-epoch fine-tune from the stage-1 checkpoint, with LOCE's trainable
# parts and schedule (configs/lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py; a test keeps them equal).
# fc_cls starts fresh: Seesaw's classifier has C + 2 outputs, the base's C + 1.
_base_ = './mask_rcnn_r50_fpn_normed_seesaw_2x_lvis_v1.py'
model = dict(trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'])
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[3, 5])
runner = dict(type='EpochBasedRunner', max_epochs=6)
evaluation = dict(interval=6)
