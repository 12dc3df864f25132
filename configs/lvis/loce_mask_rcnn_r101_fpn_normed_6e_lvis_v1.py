# Stage 2 | LVIS v1 | R101-FPN | LOCE with ResNet-101
_base_ = './loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
