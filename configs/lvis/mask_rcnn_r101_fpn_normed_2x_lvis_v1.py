# Stage 1 | LVIS v1 | R101-FPN | the paper's base with ResNet-101
_base_ = './mask_rcnn_r50_fpn_normed_2x_lvis_v1.py'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
