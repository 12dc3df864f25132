# Stage 2 | synthetic | R18-FPN, 1/4 width | baseline: Equalization Loss v2
# Baseline: Equalization Loss v2 (Tan et al., CVPR 2021) as a decoupled fine-tune from the shared base checkpoint,
# with the LOCE fine-tune's trainable parts and schedule: a sigmoid classifier (C classes + objectness, the base's
# C + 1 softmax rows as its start), gamma 12, mu 0.8, alpha 4; inference scores sigmoid(z_c) * (1 - sigmoid(z_bg)).
_base_ = './mask_rcnn_r18_fpn_normed_synth.py'
model = dict(
    trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'],
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(_delete_=True, type='EQLv2Loss', gamma=12.0, mu=0.8,
                          alpha=4.0, loss_weight=1.0))))
optimizer = dict(lr=0.02)
lr_config = dict(warmup_iters=100, warmup_ratio=0.001, step=[1])
runner = dict(type='EpochBasedRunner', max_epochs=2)
