# Stage 2 | synthetic | R18-FPN, 1/4 width | box-only LOCE fine-tune (Faster R-CNN)
# Stage 2 (LOCE), boxes only: the quickstart's LOCE recipe (EBL + memory-augmented feature sampling, memory init,
# steps and warm-up as loce_mask_rcnn_r18_fpn_normed_synth) in the Faster R-CNN box head; only fc_cls, fc_reg and
# the RPN train. Fine-tune from a faster_rcnn_r18_fpn_synth checkpoint.
_base_ = './faster_rcnn_r18_fpn_synth.py'
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
optimizer = dict(lr=0.02)
lr_config = dict(warmup_iters=100, warmup_ratio=0.001, step=[1])
runner = dict(type='EpochBasedRunner', max_epochs=2)
# warm_scores: the memory-init pass also fits the mean scores to the base model (as the authors' code does).
custom_hooks = [dict(type='LoceMemoryInitHook', priority='HIGHEST', warm_scores=True)]
