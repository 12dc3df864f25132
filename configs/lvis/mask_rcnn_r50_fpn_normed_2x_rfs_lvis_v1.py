# Stage 1 | LVIS v1 | R50-FPN | base with repeat-factor sampling (t = 0.001)
# Stage 1 with repeat-factor sampling (RFS, the LVIS paper's sampler; mmdet's ClassBalancedDataset): each image is
# repeated ceil(max over its classes of max(1, sqrt(t / f_c))) times per epoch, f_c = fraction of training images
# with class c. t = 0.001 as in the LVIS paper (rare classes, f_c <= 1e-4, get factors of 3.2 and more).
# The other toolkits' strong baseline; LOCE's fine-tune can start from this base or from the plain one.
_base_ = './mask_rcnn_r50_fpn_normed_2x_lvis_v1.py'
data = dict(train=dict(_delete_=True, type='ClassBalancedDataset', oversample_thr=1e-3,
                       dataset={{_base_.data.train}}))
