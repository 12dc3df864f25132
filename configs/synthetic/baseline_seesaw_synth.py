# Stage 2 | synthetic | R18-FPN, 1/4 width | baseline: Seesaw loss
# Baseline: Seesaw loss (Wang et al., CVPR 2021) as a decoupled fine-tune from the shared base checkpoint, with the
# LOCE fine-tune's trainable parts and schedule (tests/engine/test_baseline_configs.py keeps them equal):
# mmdet 2.28's SeesawLoss (p = 0.8, q = 2.0) with its normalised-linear classifier (temperature 20). Seesaw's
# classifier has C + 2 outputs (C classes + 2 objectness), so fc_cls starts fresh: the base's C + 1 rows do not fit.
_base_ = './mask_rcnn_r18_fpn_normed_synth.py'
model = dict(
    trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'],
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),  # sic: mmdet's spelling
            loss_cls=dict(_delete_=True, type='SeesawLoss', p=0.8, q=2.0, num_classes={{_base_.num_classes}},
                          loss_weight=1.0))))
optimizer = dict(lr=0.02)
lr_config = dict(warmup_iters=100, warmup_ratio=0.001, step=[1])
runner = dict(type='EpochBasedRunner', max_epochs=2)
