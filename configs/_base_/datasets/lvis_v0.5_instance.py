# LVIS v0.5 (1230 classes): COCO 2017 images; v0.5 files name images by file_name under train2017/ val2017/.
_base_ = 'lvis_v1_instance.py'
data_root = 'data/lvis_v0.5/'
data = dict(
    train=dict(ann_file=data_root + 'annotations/lvis_v0.5_train.json', img_prefix=data_root + 'train2017/'),
    val=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root + 'val2017/'),
    test=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root + 'val2017/'))
