"""LOCE heads for mmdet 2.x: the box head with the mean-score tracker, the RoI head with the feature memory,
and the normed (cosine) mask head.

Parameter names stay those of mmdet's ``Shared2FCBBoxHead`` (``shared_fcs``, ``fc_cls``, ``fc_reg``) and
``FCNMaskHead`` (``convs``, ``upsample``, ``conv_logits``), so mmdet 2.x checkpoints of Mask R-CNN models load
into them. LOCE state lives in buffers: ``roi_head.bbox_head.score_tracker.scores`` and
``roi_head.memory.*``, saved in every checkpoint.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.runner import force_fp32
from torchvision.ops import roi_align

from mmdet.core import bbox2roi
from mmdet.models.builder import HEADS
from mmdet.models.losses import accuracy
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.roi_heads.mask_heads import FCNMaskHead

from loce_cli.core.memory_bank import FeatureMemory
from loce_cli.core.proposals import jitter_boxes
from loce_cli.core.score_tracker import MeanScoreTracker
from loce_cli.mmdet_ext.amp import fp32
from loce_cli.mmdet_ext.losses import EquilibriumLoss

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@HEADS.register_module()
class LoceBBoxHead(Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` that owns the mean-score tracker and feeds its scores to ``EquilibriumLoss``.

    Args:
        score_tracker: ``dict(alpha=0.9, init_score=0.01, bg_score=0.01)`` overrides.
    """

    def __init__(self, *args, score_tracker: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = dict(alpha=0.9, init_score=0.01, bg_score=0.01)
        cfg.update(score_tracker or {})
        self.score_tracker = MeanScoreTracker(self.num_classes, **cfg)

    @force_fp32(apply_to=("cls_score", "bbox_pred"))
    def loss(self, cls_score, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights,
             reduction_override=None) -> Dict[str, torch.Tensor]:
        # in fp32 whatever the autocast (mmcv's force_fp32 acts only with its own fp16_enabled, which loce never
        # sets; loce_cli.mmdet_ext.amp): log(s) of small mean scores and the softmax need fp32
        with fp32(cls_score, bbox_pred) as (cls_score, bbox_pred):
            return self._loss_fp32(cls_score, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights,
                                   reduction_override)

    def _loss_fp32(self, cls_score, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights,
                   reduction_override=None) -> Dict[str, torch.Tensor]:
        losses = super().loss(None, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights,
                              reduction_override=reduction_override)
        if cls_score is not None and cls_score.numel() > 0:
            avg_factor = (label_weights > 0).sum().clamp_min(1).to(cls_score.dtype)  # on device: no sync
            extra = {}
            if isinstance(self.loss_cls, EquilibriumLoss):
                extra["mean_scores"] = self.score_tracker.scores
            losses["loss_cls"] = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor,
                                               reduction_override=reduction_override, **extra)
            losses["acc"] = accuracy(cls_score, labels)
        return losses


@HEADS.register_module()
class LoceRoIHead(StandardRoIHead):
    """``StandardRoIHead`` with LOCE's memory-augmented feature sampling and mean-score updates.

    Each training step:

    1. assign and sample RoIs as usual; RoIAlign their features;
    2. draw ``sample_classes x sample_features`` stored features from the memory (classes ``∝ 1/s_c``) and
       append them, with their labels and regression targets (weight 1), to the box head's batch;
    3. compute the box losses (EBL reads the current scores);
    4. update the mean scores from the softmax probabilities: per ground truth with positive RoIs, the mean
       probability of its class over them; per distinct drawn class, the mean over all its drawn features
       (one pair even when the class was drawn more than once);
    5. push RoIAlign features of 16 jittered boxes per ground truth (detached) into the memory.

    The mask branch sees only the sampled RoIs, as in ``StandardRoIHead``. Images without ground truth and
    batches without any work (nothing pushed, no pairs).

    Args:
        memory: ``dict(enabled=True, queue_size=80, sample_classes=8, sample_features=4, dtype='float32',
            device='model')`` overrides. ``enabled=False`` keeps the score tracking (for EBL) without feature
            sampling. ``dtype`` ``'float16'``/``'bfloat16'`` halves the memory; ``device='cpu'`` keeps it in host
            memory when the model runs on a GPU (saves GPU memory, costs a host copy per step).
    """

    def __init__(self, *args, memory: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = dict(enabled=True, queue_size=80, sample_classes=8, sample_features=4, dtype="float32",
                   device="model")
        cfg.update(memory or {})
        unknown = set(cfg) - {"enabled", "queue_size", "sample_classes", "sample_features", "dtype", "device"}
        if unknown:
            raise ValueError(f"LoceRoIHead memory: unknown option(s) {sorted(unknown)}")
        if not hasattr(self.bbox_head, "score_tracker"):
            raise TypeError("LoceRoIHead needs a box head with a mean-score tracker: use bbox_head=dict("
                            "type='LoceBBoxHead', ...)")
        if cfg["device"] not in ("model", "cpu"):
            raise ValueError(f"LoceRoIHead memory device must be 'model' (follow the model) or 'cpu' (host), got "
                             f"{cfg['device']!r}")
        if cfg["dtype"] not in DTYPES:
            raise ValueError(f"LoceRoIHead memory dtype must be one of {sorted(DTYPES)}, got {cfg['dtype']!r}")
        self.memory_cfg = cfg
        extractor = self.bbox_roi_extractor
        size = extractor.roi_layers[0].output_size
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.memory = FeatureMemory(self.bbox_head.num_classes, queue_size=cfg["queue_size"],
                                    feat_shape=(extractor.out_channels, *size), dtype=DTYPES[cfg["dtype"]],
                                    keep_on_host=cfg["device"] == "cpu")

    @property
    def score_tracker(self) -> MeanScoreTracker:
        return self.bbox_head.score_tracker

    @property
    def memory_enabled(self) -> bool:
        return bool(self.memory_cfg["enabled"])

    # -- memory writing -------------------------------------------------------------------------------------
    @torch.no_grad()
    def push_gt_features(self, x: Sequence[torch.Tensor], gt_bboxes: List[torch.Tensor],
                         gt_labels: List[torch.Tensor], img_metas: List[dict]) -> int:
        """RoIAlign features of 16 jittered boxes per ground truth into the memory; returns how many."""
        boxes, labels, targets = [], [], []
        for b, l, meta in zip(gt_bboxes, gt_labels, img_metas):
            if b.shape[0] == 0:
                boxes.append(b.new_zeros((0, 4)))
                continue
            jittered, gt_index = jitter_boxes(b, meta["img_shape"])
            boxes.append(jittered)
            labels.append(l[gt_index])
            targets.append(self.bbox_head.bbox_coder.encode(jittered, b[gt_index]))
        total = sum(t.shape[0] for t in boxes)
        if total == 0:
            return 0
        feats = self.memory_roi_features(x, bbox2roi(boxes))
        self.memory.push(feats.detach(), torch.cat(labels), torch.cat(targets))
        return total

    @torch.no_grad()
    def memory_roi_features(self, x: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """Box-head RoI features ``[K, C, 7, 7]`` of ``rois [K, 5]``, without gradient.

        Same result as ``bbox_roi_extractor`` (same FPN level mapping, same RoIAlign math); when that
        extractor is mmcv's average RoIAlign, torchvision's kernel computes it (bit-identical output, about 2x
        faster on CPU, where the memory push's RoIAlign dominates LOCE's extra cost).
        """
        ext = self.bbox_roi_extractor
        layer = ext.roi_layers[0]
        usable = (type(ext).__name__ == "SingleRoIExtractor" and not getattr(ext, "roi_scale_factor", None)
                  and type(layer).__name__ == "RoIAlign" and getattr(layer, "pool_mode", "avg") == "avg"
                  and not self.with_shared_head)
        if not usable:
            feats = ext(x[: ext.num_inputs], rois)
            return self.shared_head(feats) if self.with_shared_head else feats
        num_levels = len(ext.featmap_strides)
        out = x[0].new_zeros((rois.shape[0], ext.out_channels, *layer.output_size))
        levels = ext.map_roi_levels(rois, num_levels)
        for i, stride in enumerate(ext.featmap_strides):
            inds = (levels == i).nonzero(as_tuple=True)[0]
            if inds.numel():
                out[inds] = roi_align(x[i], rois[inds], layer.output_size, 1.0 / stride, layer.sampling_ratio,
                                      layer.aligned)
        return out

    # -- training -------------------------------------------------------------------------------------------
    def forward_train(self, x, img_metas, proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore=None,
                      gt_masks=None, **kwargs):
        sampling_results = self._assign_and_sample(x, proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore)
        losses = dict()
        bbox_results = self._loce_bbox_forward_train(x, sampling_results, gt_bboxes, gt_labels)
        losses.update(bbox_results["loss_bbox"])
        if self.with_mask:
            mask_results = self._mask_forward_train(x, sampling_results, bbox_results["bbox_feats"], gt_masks,
                                                     img_metas)
            losses.update(mask_results["loss_mask"])
        if self.memory_enabled:
            self.push_gt_features(x, gt_bboxes, gt_labels, img_metas)
        return losses

    def _assign_and_sample(self, x, proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore=None) -> list:
        """mmdet's RoI assignment and sampling (train-cfg assigner/sampler), one ``SamplingResult`` per image."""
        if gt_bboxes_ignore is None:
            gt_bboxes_ignore = [None] * len(proposal_list)
        sampling_results = []
        for i in range(len(proposal_list)):
            assign = self.bbox_assigner.assign(proposal_list[i], gt_bboxes[i], gt_bboxes_ignore[i], gt_labels[i])
            sampling_results.append(self.bbox_sampler.sample(assign, proposal_list[i], gt_bboxes[i], gt_labels[i],
                                                             feats=[lvl[i][None] for lvl in x]))
        return sampling_results

    def _roi_feats(self, x, sampling_results) -> tuple:
        """``(rois [N, 5], bbox_feats [N, C, 7, 7])`` of the sampled RoIs (positives first in each image)."""
        rois = bbox2roi([res.bboxes for res in sampling_results])
        bbox_feats = self.bbox_roi_extractor(x[: self.bbox_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        return rois, bbox_feats

    def _draw_memory(self, like: torch.Tensor) -> Optional[tuple]:
        """This step's draw from the memory, on ``like``'s device and in its dtype:
        ``(feats [K, C, 7, 7], labels [K], reg_targets [K, 4])``, ``K = sample_classes * sample_features``;
        ``None`` when sampling is off or the memory is empty (known on the host: no sync)."""
        if not self.memory_enabled:
            return None
        if self.bbox_head.reg_decoded_bbox:
            raise ValueError("LoceRoIHead memory sampling needs reg_decoded_bbox=False (stored features carry "
                             "encoded regression targets, not boxes)")
        feats, labels, targets = self.memory.sample(
            self.score_tracker.scores, self.memory_cfg["sample_classes"], self.memory_cfg["sample_features"],
            out_dtype=like.dtype)
        if feats.shape[0] == 0:
            return None
        device = like.device
        return feats.to(device), labels.to(device), targets.to(device)

    def _loce_bbox_forward_train(self, x, sampling_results, gt_bboxes, gt_labels) -> dict:
        rois, bbox_feats = self._roi_feats(x, sampling_results)
        labels, label_weights, bbox_targets, bbox_weights = self.bbox_head.get_targets(
            sampling_results, gt_bboxes, gt_labels, self.train_cfg)
        num_rois = bbox_feats.shape[0]

        head_feats, all_rois, mem_labels = bbox_feats, rois, None
        drawn = self._draw_memory(bbox_feats)
        if drawn is not None:
            # memory rows: their stored class and regression targets, weight 1 for classification and regression
            m_feats, mem_labels, m_targets = drawn
            k = m_feats.shape[0]
            head_feats = torch.cat([bbox_feats, m_feats])
            all_rois = torch.cat([rois, rois.new_zeros((k, 5))])
            labels = torch.cat([labels, mem_labels])
            label_weights = torch.cat([label_weights, label_weights.new_ones(k)])
            bbox_targets = torch.cat([bbox_targets, m_targets.to(bbox_targets.dtype)])
            bbox_weights = torch.cat([bbox_weights, bbox_weights.new_ones((k, bbox_weights.shape[1]))])
        cls_score, bbox_pred = self.bbox_head(head_feats)
        loss_bbox = self.bbox_head.loss(cls_score, bbox_pred, all_rois, labels, label_weights, bbox_targets,
                                        bbox_weights)
        self._update_scores(cls_score.detach(), sampling_results, gt_labels, num_rois, mem_labels)
        return dict(cls_score=cls_score[:num_rois], bbox_pred=bbox_pred[:num_rois], bbox_feats=bbox_feats,
                    loss_bbox=loss_bbox)

    @torch.no_grad()
    def warm_score_pairs(self, x, proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore=None) -> tuple:
        """The (class, mean probability) pairs a training step would bring, without losses or gradient (memory
        initialisation). Same RoIs as :meth:`forward_train` (train-cfg assigner and sampler over
        ``proposal_list``) and the same draw from the memory as it stands, so memory-drawn features contribute
        as they do in the authors' initialisation, which runs the normal training forward. Nothing is pushed
        and the tracker is not updated here: the caller does both (see ``fill_memory``).

        Args:
            x: FPN features, one ``[B, C, H, W]`` per level.
            proposal_list: ``B`` tensors ``[n_i, 5]`` (boxes + score), e.g. the RPN's with ``train_cfg.rpn_proposal``.
            gt_bboxes, gt_labels: ``B`` tensors ``[g_i, 4]`` and ``[g_i]``.

        Returns:
            ``(labels [P], means [P], weights [P])`` as :meth:`_score_pairs`.
        """
        sampling_results = self._assign_and_sample(x, proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore)
        _, bbox_feats = self._roi_feats(x, sampling_results)
        drawn = self._draw_memory(bbox_feats)
        head_feats = bbox_feats if drawn is None else torch.cat([bbox_feats, drawn[0]])
        cls_score, _ = self.bbox_head(head_feats)
        return self._score_pairs(cls_score, sampling_results, gt_labels, bbox_feats.shape[0],
                                 None if drawn is None else drawn[1])

    @torch.no_grad()
    def _score_pairs(self, cls_score: torch.Tensor, sampling_results, gt_labels: List[torch.Tensor],
                     num_rois: int, mem_labels: Optional[torch.Tensor]) -> tuple:
        """This step's (class, mean probability) pairs for the tracker.

        - one per ground truth: the mean, over the RoIs assigned to it as positives (and only those), of the
          softmax probability of its class; weight 0 for a ground truth without positives;
        - one per distinct class drawn from the memory: the mean probability of that class over all its drawn
          features (a class drawn twice in the step still counts once).

        Args:
            cls_score: ``[num_rois + K, C + 1]`` logits, sampled RoIs first (each image's positives first, in
                ``pos_assigned_gt_inds`` order), then the ``K`` memory rows.
            mem_labels: ``[K]`` classes of the memory rows, or ``None``.

        Returns:
            ``(labels [G (+ C)], means [G (+ C)], weights [G (+ C)])``, ``G`` ground truths in the batch.
        """
        probs = F.softmax(cls_score.float(), dim=1)
        device = probs.device
        rows, gt_ids = [], []
        start, gt_offset = 0, 0
        for res, labels in zip(sampling_results, gt_labels):
            n_pos = res.pos_inds.shape[0]
            rows.append(torch.arange(start, start + n_pos, device=device))
            gt_ids.append(res.pos_assigned_gt_inds.to(device) + gt_offset)
            start += res.bboxes.shape[0]
            gt_offset += labels.shape[0]
        all_gt_labels = torch.cat([g.to(device) for g in gt_labels]) if gt_labels else \
            torch.zeros(0, dtype=torch.long, device=device)
        rows_t, gt_t = torch.cat(rows), torch.cat(gt_ids)
        pos_prob = probs[rows_t, all_gt_labels[gt_t]]
        sums = torch.zeros(gt_offset, device=device).index_add_(0, gt_t, pos_prob)
        counts = torch.zeros(gt_offset, device=device).index_add_(0, gt_t, torch.ones_like(pos_prob))
        pair_labels = [all_gt_labels]
        pair_means = [sums / counts.clamp_min(1)]
        pair_weights = [(counts > 0).float()]
        if mem_labels is not None and mem_labels.numel():
            mem_prob = probs[num_rois:].gather(1, mem_labels.view(-1, 1)).squeeze(1)
            classes, means, weights = self.score_tracker.class_pairs(mem_labels, mem_prob)
            pair_labels.append(classes.to(device))
            pair_means.append(means.to(device))
            pair_weights.append(weights.to(device))
        return torch.cat(pair_labels), torch.cat(pair_means), torch.cat(pair_weights)

    @torch.no_grad()
    def _update_scores(self, cls_score: torch.Tensor, sampling_results, gt_labels: List[torch.Tensor],
                       num_rois: int, mem_labels: Optional[torch.Tensor]) -> None:
        """One tracker update with this step's pairs (:meth:`_score_pairs`; one collective across ranks), in fp32
        whatever the autocast."""
        with fp32(cls_score) as (cls_score,):
            self.score_tracker.update(*self._score_pairs(cls_score, sampling_results, gt_labels, num_rois,
                                                         mem_labels))


@HEADS.register_module()
class NormedMaskHead(FCNMaskHead):
    """``FCNMaskHead`` with cosine mask logits: ``conv(scale * normalize(x), normalize(W)) + b`` (scale 20).

    ``x`` is normalised over channels at each position; each class's 1x1 weight vector to unit length. The
    normalisation runs in fp32 whatever the input's dtype (:func:`safe_normalize`); the 1x1 convolution in the
    autocast dtype. The mask loss is computed in fp32.
    """

    def __init__(self, *args, scale: float = 20.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.conv_logits, torch.nn.Conv2d) or self.conv_logits.kernel_size != (1, 1):
            raise ValueError("NormedMaskHead needs the default 1x1 Conv2d predictor")
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        if self.upsample is not None:
            x = self.upsample(x)
            if self.upsample_method == "deconv":
                x = self.relu(x)
        w = self.conv_logits.weight
        w_n = safe_normalize(w.flatten(1), dim=1).view_as(w)
        return F.conv2d(safe_normalize(x, dim=1, scale=self.scale), w_n, self.conv_logits.bias)

    def loss(self, mask_pred, mask_targets, labels):
        with fp32(mask_pred, mask_targets) as (mask_pred, mask_targets):
            return super().loss(mask_pred, mask_targets, labels)


def safe_normalize(x: torch.Tensor, dim: int = 1, eps: float = 1e-12, scale: float = 1.0) -> torch.Tensor:
    """``scale * x / max(||x||, eps)`` along ``dim``, computed in fp32 and returned in ``x``'s dtype. In fp16 the
    squares of small features underflow to 0 and fp16 has no 1e-12 (it rounds to 0), so ``F.normalize`` of a
    half tensor with tiny norms gives 0/0 = NaN; the unit-length (times ``scale``) result fits any half type."""
    if x.dtype not in (torch.float16, torch.bfloat16):
        return F.normalize(x, dim=dim, eps=eps) * scale if scale != 1.0 else F.normalize(x, dim=dim, eps=eps)
    x32 = x.float()
    return (x32 * (scale / x32.norm(dim=dim, keepdim=True).clamp_min(eps))).to(x.dtype)
