# Stage 2 | LVIS v1 | R50-FPN | baseline: Equalization Loss v2 fine-tune
# Baseline, stage 2: Equalization Loss v2 (Tan et al., CVPR 2021) as a decoupled 6-epoch fine-tune from the stage-1
# checkpoint, with LOCE's trainable parts and schedule: sigmoid classifier (1203 classes + objectness), gamma 12,
# mu 0.8, alpha 4, statistics all-reduced across GPUs every step. The paper trains EQLv2 end to end (1x: 23.7 mask
# AP, 14.9 APr); this is its decoupled form, for a comparison with LOCE on equal terms.
_base_ = './mask_rcnn_r50_fpn_normed_2x_lvis_v1.py'
model = dict(
    trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'],
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(_delete_=True, type='EQLv2Loss', gamma=12.0, mu=0.8,
                          alpha=4.0, loss_weight=1.0))))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[3, 5])
runner = dict(type='EpochBasedRunner', max_epochs=6)
evaluation = dict(interval=6)
