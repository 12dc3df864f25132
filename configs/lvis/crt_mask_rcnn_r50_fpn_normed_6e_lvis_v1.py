# Stage 2 | LVIS v1 | R50-FPN | baseline: cRT, class-balanced classifier re-training
# Baseline, stage 2: cRT (classifier re-training with class-balanced data, Kang et al. 2020) as a decoupled 6-epoch
# fine-tune from the stage-1 checkpoint, with LOCE's trainable parts and schedule: plain softmax CE, images drawn
# class-first (a class uniformly, then an image holding it).
_base_ = './mask_rcnn_r50_fpn_normed_2x_lvis_v1.py'
model = dict(trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'])
data = dict(train_dataloader=dict(class_aware_sampler=dict(num_sample_class=1)))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[3, 5])
runner = dict(type='EpochBasedRunner', max_epochs=6)
evaluation = dict(interval=6)
