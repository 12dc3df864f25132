# Stage 2 | LVIS v1 | R50-FPN | baseline: federated loss fine-tune
# Baseline, stage 2: federated loss (Zhou, Koltun, Kraehenbuehl 2021) as a decoupled 6-epoch fine-tune from the
# stage-1 checkpoint, with LOCE's trainable parts and schedule: sigmoid BCE over the batch's classes plus negatives
# drawn with probability ~ (training images per class) ** 0.5, 50 classes per step (detectron2's default).
_base_ = './mask_rcnn_r50_fpn_normed_2x_lvis_v1.py'
model = dict(
    trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'],
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(_delete_=True, type='FederatedLoss',
                          num_classes_sampled=50, freq_power=0.5, loss_weight=1.0))))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[3, 5])
runner = dict(type='EpochBasedRunner', max_epochs=6)
evaluation = dict(interval=6)
custom_hooks = [dict(type='ClassFrequencyHook')]
