# Stage 2 | LVIS v1 | R50-FPN | LOCE from an mmdet zoo model (standard FCNMaskHead)
# Stage 2 (LOCE) for fine-tuning a Mask R-CNN trained with mmdetection's standard class-specific mask head
# (FCNMaskHead), e.g. the model zoo's mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1:
#   loce finetune lvis/loce_mask_rcnn_r50_fpn_6e_lvis_v1 --from mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1.pth
# The paper's recipe otherwise (equilibrium loss + memory-augmented feature sampling, 6 epochs); only the mask head
# differs from loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1 (whose normed head fits loce's own base models).
_base_ = './loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py'
model = dict(roi_head=dict(mask_head=dict(_delete_=True, type='FCNMaskHead', num_convs=4, in_channels=256,
                                          conv_out_channels=256, num_classes={{_base_.num_classes}},
                                          loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))))
