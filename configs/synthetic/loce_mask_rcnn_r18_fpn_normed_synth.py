# Stage 2 | synthetic | R18-FPN, 1/4 width | the quickstart's LOCE fine-tune
# Stage 2 (LOCE) on the synthetic data: the paper's fine-tune recipe (EBL + memory-augmented feature
# sampling, freeze all but fc_cls / fc_reg / RPN / mask head, steps at 1/2 and 5/6 of the schedule, warm-up),
# sized for a CPU: 2 epochs (step after the first), 100 warm-up iterations, queue 80, 8 classes x 4 features.
_base_ = './mask_rcnn_r18_fpn_normed_synth.py'
model = dict(
    trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'],
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
# warm_scores: the memory-init pass also fits the mean scores to the base model (as the authors' code does);
# False starts the fine-tune at s = 0.01 (--cfg-options custom_hooks.0.warm_scores=False).
custom_hooks = [dict(type='LoceMemoryInitHook', priority='HIGHEST', warm_scores=True)]
