# Stage 2 | synthetic | R18-FPN, 1/4 width | baseline: federated loss
# Baseline: federated loss (Zhou, Koltun, Kraehenbuehl 2021; detectron2's use_fed_loss) as a decoupled fine-tune from
# the shared base checkpoint, with the LOCE fine-tune's trainable parts and schedule: sigmoid BCE over the classes
# present in the batch plus negatives drawn in proportion to (training images per class) ** 0.5. LVIS uses 50
# classes per step out of 1203; with 40 classes here 50 would be every class (plain sigmoid BCE), so 12: about the
# classes a batch of 4 images holds (5-10) plus a few drawn negatives.
_base_ = './mask_rcnn_r18_fpn_normed_synth.py'
model = dict(
    trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'],
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(_delete_=True, type='FederatedLoss',
                          num_classes_sampled=12, freq_power=0.5, loss_weight=1.0))))
optimizer = dict(lr=0.02)
lr_config = dict(warmup_iters=100, warmup_ratio=0.001, step=[1])
runner = dict(type='EpochBasedRunner', max_epochs=2)
custom_hooks = [dict(type='ClassFrequencyHook')]  # the sampling weights, from the training set's annotations
