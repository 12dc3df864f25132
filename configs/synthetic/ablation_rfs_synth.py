# Stage 2 | synthetic | R18-FPN, 1/4 width | ablation 5: repeat-factor sampling
# Ablation 5: repeat-factor sampling (mmdet's ClassBalancedDataset) with plain cross-entropy fine-tuning.
# Threshold 0.1 for this data: the rare boundary here is 10 of 600 training images (f = 0.017), so rare classes
# get a repeat factor sqrt(0.1 / f) of 2.4-7.7, common ones 1-2.3, frequent ones (f >= 0.19) 1; mmdet rounds each
# image's factor up, so an epoch grows from 600 to 1,112 images (data seed 0) and with the epoch count fixed the RFS
# runs do ~1.85x the iterations of the others (RFS on LVIS lengthens epochs the same way).
_base_ = './ablation_plain_ft_synth.py'
data = dict(train=dict(_delete_=True, type='ClassBalancedDataset', oversample_thr=0.1,
                       dataset={{_base_.data.train}}))
