# Stage 2 | synthetic | R18-FPN, 1/4 width | baseline: cRT, class-balanced re-training
# Baseline: cRT, classifier re-training with class-balanced data (Kang et al., ICLR 2020), as a decoupled fine-tune
# from the shared base checkpoint, with the LOCE fine-tune's trainable parts and schedule: plain softmax CE, each
# training image drawn by first drawing a class uniformly, then an image holding it (loce's class-aware sampler,
# switched on by mmdet 2.28's config key).
_base_ = './mask_rcnn_r18_fpn_normed_synth.py'
model = dict(trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head'])
data = dict(train_dataloader=dict(class_aware_sampler=dict(num_sample_class=1)))
optimizer = dict(lr=0.02)
lr_config = dict(warmup_iters=100, warmup_ratio=0.001, step=[1])
runner = dict(type='EpochBasedRunner', max_epochs=2)
