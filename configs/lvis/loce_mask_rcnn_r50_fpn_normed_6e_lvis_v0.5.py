_base_ = './loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py'
data_root = 'data/lvis_v0.5/'
data = dict(
    train=dict(ann_file=data_root + 'annotations/lvis_v0.5_train.json', img_prefix=data_root + 'train2017/'),
    val=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root + 'val2017/'),
    test=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root + 'val2017/'))
model = dict(roi_head=dict(bbox_head=dict(num_classes=1230), mask_head=dict(num_classes=1230)))
