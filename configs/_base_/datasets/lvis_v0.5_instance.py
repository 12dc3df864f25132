# LVIS v0.5 (1230 classes): COCO 2017 images, resolved like v1 from each image's coco_url
# (http://images.cocodataset.org/train2017/...) under data_root; `loce data prep --root data/lvis_v0.5` first.
_base_ = 'lvis_v1_instance.py'
data_root = 'data/lvis_v0.5/'
data = dict(
    train=dict(ann_file=data_root + 'annotations/lvis_v0.5_train.json', img_prefix=data_root),
    val=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root),
    test=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root))
