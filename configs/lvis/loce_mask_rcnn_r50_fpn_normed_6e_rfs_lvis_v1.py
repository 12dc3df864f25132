# Stage 2 | LVIS v1 | R50-FPN | LOCE over repeat-factor sampling (RFS + LOCE)
# LOCE fine-tune (EBL + memory-augmented sampling) over repeat-factor-sampled data (t = 0.001, see
# mask_rcnn_r50_fpn_normed_2x_rfs_lvis_v1.py): the "RFS + LOCE" combination. Epochs grow with the repeats.
_base_ = './loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py'
data = dict(train=dict(_delete_=True, type='ClassBalancedDataset', oversample_thr=1e-3,
                       dataset={{_base_.data.train}}))
