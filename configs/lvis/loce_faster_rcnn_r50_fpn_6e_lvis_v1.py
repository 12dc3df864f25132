# Stage 2 | LVIS v1 | R50-FPN | box-only LOCE (Faster R-CNN: EBL + feature memory)
# Stage 2 (LOCE), boxes only: the paper's 6-epoch recipe (equilibrium loss + memory-augmented feature sampling,
# memory init, steps at 3 and 5) in the Faster R-CNN box head, fine-tuned from a faster_rcnn_r50_fpn_2x_lvis_v1
# checkpoint; only fc_cls, fc_reg and the RPN train.
_base_ = './faster_rcnn_r50_fpn_2x_lvis_v1.py'
model = dict(
    trainable=['fc_cls', 'fc_reg', 'rpn'],
    roi_head=dict(
        type='LoceRoIHead',
        memory=dict(enabled=True, queue_size=80, sample_classes=8, sample_features=4, dtype='float32',
                    device='model'),
        bbox_head=dict(
            type='LoceBBoxHead',
            score_tracker=dict(alpha=0.9, init_score=0.01, bg_score=0.01),
            loss_cls=dict(_delete_=True, type='EquilibriumLoss', loss_weight=1.0))))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[3, 5])
runner = dict(type='EpochBasedRunner', max_epochs=6)
evaluation = dict(interval=6)
custom_hooks = [dict(type='LoceMemoryInitHook', priority='HIGHEST', warm_scores=True)]
