# Stage 2 | synthetic | R18-FPN, 1/4 width | ablation 6: repeat-factor sampling + LOCE
# Ablation 6: repeat-factor sampling (threshold 0.1, see ablation_rfs_synth.py) + LOCE (EBL + MFS).
_base_ = './loce_mask_rcnn_r18_fpn_normed_synth.py'
data = dict(train=dict(_delete_=True, type='ClassBalancedDataset', oversample_thr=0.1,
                       dataset={{_base_.data.train}}))
