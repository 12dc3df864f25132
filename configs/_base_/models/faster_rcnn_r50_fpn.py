# Faster R-CNN R50-FPN (boxes only): LOCE's Mask R-CNN base model without its mask branch.
# Plain softmax cross-entropy; test: score_thr 1e-4, 300 detections per image (LVIS protocol).
_base_ = './mask_rcnn_r50_fpn_normed.py'
model = dict(type='LoceFasterRCNN', roi_head=dict(mask_roi_extractor=None, mask_head=None))
