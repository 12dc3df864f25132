# Stage 1 | LVIS v1 | R50-FPN | baseline: base trained with Seesaw loss
# Baseline, stage 1 with Seesaw loss (Wang et al., CVPR 2021): the base recipe (R50-FPN, normed mask head,
# multi-scale, 2x, random sampling) with mmdet 2.28's SeesawLoss (p = 0.8, q = 2.0) and its normalised-linear
# classifier (temperature 20). mmdet's model zoo reports 27.6 box / 26.8 mask AP for this with RFS
# (compose with the _rfs_ dataset wrapper for that).
_base_ = './mask_rcnn_r50_fpn_normed_2x_lvis_v1.py'
model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),  # sic: mmdet's spelling
            loss_cls=dict(_delete_=True, type='SeesawLoss', p=0.8, q=2.0, num_classes={{_base_.num_classes}},
                          loss_weight=1.0))))
