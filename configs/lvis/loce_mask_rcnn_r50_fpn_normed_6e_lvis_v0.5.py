# Stage 2 | LVIS v0.5 | R50-FPN | LOCE on LVIS v0.5
# Stage 2 (LOCE) on LVIS v0.5 (1230 classes): the v1 LOCE recipe with v0.5's annotations and class count.
# Images resolve from each image's coco_url (http://images.cocodataset.org/train2017/...) under data_root, as in
# ../_base_/datasets/lvis_v0.5_instance.py: img_prefix is the data root itself (data_root + 'train2017/' would
# look for data_root/train2017/train2017/...).
_base_ = './loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py'
data_root = 'data/lvis_v0.5/'
data = dict(
    train=dict(ann_file=data_root + 'annotations/lvis_v0.5_train.json', img_prefix=data_root),
    val=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root),
    test=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root))
model = dict(roi_head=dict(bbox_head=dict(num_classes=1230), mask_head=dict(num_classes=1230)))
