# Stage 2 | LVIS v1 | R50-FPN | LOCE, the paper's recipe (EBL + feature memory)
# Stage 2 (LOCE): 6-epoch fine-tune from the stage-1 checkpoint (loce finetune CONFIG --from BASE_CKPT):
# equilibrium loss + memory-augmented feature sampling; only fc_cls, fc_reg, the RPN and the mask head train.
_base_ = './mask_rcnn_r50_fpn_normed_2x_lvis_v1.py'
model = dict(
    trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'],
    roi_head=dict(
        type='LoceRoIHead',
        # dtype='float16' halves the per-process memory (LVIS v1: 4.8 GB -> 2.4 GB); device='cpu' keeps it on the host.
        memory=dict(enabled=True, queue_size=80, sample_classes=8, sample_features=4, dtype='float32',
                    device='model'),
        bbox_head=dict(
            type='LoceBBoxHead',
            score_tracker=dict(alpha=0.9, init_score=0.01, bg_score=0.01),
            loss_cls=dict(_delete_=True, type='EquilibriumLoss', loss_weight=1.0))))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[3, 5])
runner = dict(type='EpochBasedRunner', max_epochs=6)
evaluation = dict(interval=6)
# warm_scores: the memory-init pass also fits the mean scores to the base model (as the authors' code does);
# False starts the fine-tune at s = 0.01 (--cfg-options custom_hooks.0.warm_scores=False).
custom_hooks = [dict(type='LoceMemoryInitHook', priority='HIGHEST', warm_scores=True)]
