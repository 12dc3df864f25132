"""The LOCE authors' config files (fcjian/LOCE, configs/loce/, written for mmdet 2.8 / mmcv 1.2) read as loce
configs: their type names and keys translated to loce's components, each translation named.

Their layout (facts from their repository): ``LoceRoIHead`` whose options sit in ``train_cfg.rcnn`` (``alpha``,
``bg_score``, ``mfs=dict(queue_size, gpu_statictics, sampled_num_classes, sampled_num_features)``),
``LoceShared2FCBBoxHead`` with ``EquilibriumLoss``, ``FCNNormMaskHead`` (cosine logits at a fixed scale of 20),
``InitializerHook`` (the memory initialisation pass, which also fits the mean scores), ``selectp = 1`` (train only
fc_cls, fc_reg, the RPN and the mask head), ``total_epochs``, ``load_from`` (the base checkpoint), a model-level
``pretrained`` and mmdet 2.8's RPN keys (``max_num``, ``nms_thr``, ``nms_post``, ``nms_across_levels``).
A key of theirs that loce has no equivalent for is refused by name (:class:`AuthorsConfigError`).
"""

from __future__ import annotations

from typing import List

from mmcv import ConfigDict

AUTHORS_TYPES = ("LoceShared2FCBBoxHead", "FCNNormMaskHead", "InitializerHook")
TRAINABLE = ["fc_cls", "fc_reg", "rpn", "mask_head"]  # their selectp = 1 (tools/train.py)
MFS_KEYS = {"queue_size", "gpu_statictics", "sampled_num_classes", "sampled_num_features"}
EQL_KEYS = {"type", "use_sigmoid", "loss_weight"}
MASK_SCALE = 20.0  # their FCNNormMaskHead: conv2d(20 * normalize(x), normalize(W)) + b


AUTHORS_KEY = "loce_translated_from_authors"  # where a translated config records what was translated


class AuthorsConfigError(ValueError):
    """A key of the authors' layout that loce cannot honour; the message names it."""


def authors_translation_lines(cfg) -> List[str]:
    """The log lines of a translated config: one saying so, then one per translated key; none for another."""
    record = cfg.get(AUTHORS_KEY)
    if not record:
        return []
    lines = [f"{record['source']} is in the LOCE authors' layout (fcjian/LOCE, mmdet 2.8): read with "
             f"{len(record['translated'])} translation(s)"]
    return lines + [f"  translated: {line}" for line in record["translated"]]


def is_authors_config(cfg) -> bool:
    """True for a config in the LOCE authors' layout: one of their own type names, ``selectp``, or
    ``train_cfg.rcnn.mfs``."""
    model = cfg.get("model") or {}
    roi = model.get("roi_head") or {}
    types = {(roi.get("bbox_head") or {}).get("type"), (roi.get("mask_head") or {}).get("type")}
    types |= {h.get("type") for h in cfg.get("custom_hooks") or [] if hasattr(h, "get")}
    rcnn = (model.get("train_cfg") or {}).get("rcnn") or {}
    return bool(types & set(AUTHORS_TYPES)) or "selectp" in cfg or "mfs" in rcnn


def translate(cfg) -> List[str]:
    """Rewrite ``cfg`` (an ``mmcv.Config`` in the authors' layout) in place into loce's layout; the list of
    translations made, one ``"their key -> loce's"`` line each. Raises :class:`AuthorsConfigError`."""
    done: List[str] = []
    model = cfg.model
    if model.get("type") == "MaskRCNN":
        model.type = "LoceMaskRCNN"
        done.append("model.type MaskRCNN -> LoceMaskRCNN")
    if model.get("pretrained"):
        url = model.pop("pretrained")
        model.backbone.init_cfg = ConfigDict(type="Pretrained", checkpoint=url)
        done.append(f"model.pretrained={url!r} -> model.backbone.init_cfg (Pretrained)")
    elif "pretrained" in model:
        model.pop("pretrained")
    for where in ("train_cfg.rpn_proposal", "test_cfg.rpn"):
        node = model.get(where.split(".")[0], {}).get(where.split(".")[1])
        if node is not None:
            done += _rpn_keys(node, f"model.{where}")
    done += _roi_head(model)
    done += _runtime(cfg)
    done += _datasets(cfg)
    if not any("loce_cli.mmdet_ext" in i for i in (cfg.get("custom_imports") or {}).get("imports", [])):
        cfg.custom_imports = ConfigDict(imports=["loce_cli.mmdet_ext"], allow_failed_imports=False)
    return done


def _rpn_keys(node, where: str) -> List[str]:
    """mmdet 2.8's proposal keys -> mmdet 2.28's (``max_per_img``, ``nms=dict(...)``)."""
    done = []
    if node.pop("nms_across_levels", False):
        raise AuthorsConfigError(f"{where}.nms_across_levels=True has no equivalent in mmdet 2.28's RPN")
    if "max_num" in node:
        node.max_per_img = node.pop("max_num")
        done.append(f"{where}.max_num -> max_per_img")
    post = node.pop("nms_post", None)
    if post is not None and post != node.get("max_per_img"):
        raise AuthorsConfigError(f"{where}.nms_post={post} differs from max_num: mmdet 2.28 keeps max_per_img "
                                 "proposals after NMS and has no separate nms_post")
    if "nms_thr" in node:
        node.nms = ConfigDict(type="nms", iou_threshold=node.pop("nms_thr"))
        done.append(f"{where}.nms_thr/nms_post/nms_across_levels -> nms=dict(type='nms', iou_threshold)")
    return done


def _roi_head(model) -> List[str]:
    done = []
    roi = model.roi_head
    rcnn = (model.get("train_cfg") or {}).get("rcnn") or ConfigDict()
    mask = roi.get("mask_head") or {}
    if mask.get("type") == "FCNNormMaskHead":
        mask.type, mask.scale = "NormedMaskHead", MASK_SCALE
        done.append("mask_head FCNNormMaskHead -> NormedMaskHead (scale 20, as theirs)")
    bbox = roi.bbox_head
    if bbox.get("type") == "LoceShared2FCBBoxHead":
        bbox.type = "LoceBBoxHead"
        bbox.score_tracker = ConfigDict(alpha=float(rcnn.pop("alpha", 0.9)), init_score=0.01,
                                        bg_score=float(rcnn.pop("bg_score", 0.01)))
        done.append(f"bbox_head LoceShared2FCBBoxHead -> LoceBBoxHead; train_cfg.rcnn.alpha/bg_score -> "
                    f"bbox_head.score_tracker (alpha {bbox.score_tracker.alpha}, bg_score "
                    f"{bbox.score_tracker.bg_score}, init 0.01)")
    loss = bbox.get("loss_cls") or {}
    if loss.get("type") == "EquilibriumLoss":
        unknown = sorted(set(loss) - EQL_KEYS)
        if unknown or loss.get("use_sigmoid"):
            raise AuthorsConfigError(f"bbox_head.loss_cls EquilibriumLoss: {', '.join(unknown) or 'use_sigmoid=True'} "
                                     "has no loce equivalent (loce's equilibrium loss is the softmax one)")
        bbox.loss_cls = ConfigDict(type="EquilibriumLoss", loss_weight=float(loss.get("loss_weight", 1.0)))
        done.append("bbox_head.loss_cls EquilibriumLoss(use_sigmoid=False) -> EquilibriumLoss")
    if roi.get("type") == "LoceRoIHead" or "mfs" in rcnn:
        done += _memory(roi, rcnn.pop("mfs", None))
    return done


def _memory(roi, mfs) -> List[str]:
    if mfs is None:
        raise AuthorsConfigError("LoceRoIHead without train_cfg.rcnn.mfs: the authors' head always samples "
                                 "from the memory; add mfs=dict(queue_size=80, ...)")
    unknown = sorted(set(mfs) - MFS_KEYS)
    if unknown:
        raise AuthorsConfigError(f"train_cfg.rcnn.mfs.{unknown[0]} has no loce equivalent "
                                 f"(loce knows {', '.join(sorted(MFS_KEYS))})")
    roi.type = "LoceRoIHead"
    device = "model" if mfs.get("gpu_statictics", False) else "cpu"
    roi.memory = ConfigDict(enabled=True, queue_size=int(mfs.get("queue_size", 80)),
                            sample_classes=int(mfs.get("sampled_num_classes", 8)),
                            sample_features=int(mfs.get("sampled_num_features", 4)), dtype="float32",
                            device=device)
    return [f"train_cfg.rcnn.mfs -> roi_head.memory (queue_size {roi.memory.queue_size}, sample_classes "
            f"{roi.memory.sample_classes}, sample_features {roi.memory.sample_features}); gpu_statictics="
            f"{bool(mfs.get('gpu_statictics', False))} -> memory.device={device!r}"]


def _runtime(cfg) -> List[str]:
    done = []
    if "total_epochs" in cfg:
        epochs = int(cfg.pop("total_epochs"))
        cfg.runner = ConfigDict(type="EpochBasedRunner", max_epochs=epochs)
        done.append(f"total_epochs={epochs} -> runner.max_epochs")
    if "selectp" in cfg:
        part = cfg.pop("selectp")
        if part == 1:
            cfg.model.trainable = list(TRAINABLE)
            done.append(f"selectp=1 -> model.trainable={TRAINABLE}")
        elif part != 0:
            raise AuthorsConfigError(f"selectp={part!r} has no loce equivalent (the authors' code knows 0, "
                                     "train all, and 1, train fc_cls, fc_reg, the RPN and the mask head)")
    hooks = []
    for hook in cfg.get("custom_hooks") or []:
        if hook.get("type") == "InitializerHook":
            hooks.append(ConfigDict(type="LoceMemoryInitHook", priority="HIGHEST", warm_scores=True))
            done.append("custom_hooks InitializerHook -> LoceMemoryInitHook (warm_scores=True: fits the mean "
                        "scores as theirs does)")
        else:
            hooks.append(hook)
    if "custom_hooks" in cfg:
        cfg.custom_hooks = hooks
    if cfg.get("load_from"):
        done.append(f"load_from={cfg.load_from!r} -> not used: loce takes the base checkpoint as "
                    "`loce finetune CONFIG --from BASE_CKPT`")
        cfg.load_from = None
    return done


def _datasets(cfg) -> List[str]:
    """mmdet's ``LVISV1Dataset`` -> ``LoceLVISDataset`` (its subclass: class names and frequency groups read from
    the annotation file, images found the same way). v0.5 keeps mmdet's ``LVISV05Dataset``."""
    changed = []
    for split in ("train", "val", "test"):
        node = (cfg.get("data") or {}).get(split)
        while node is not None and "dataset" in node and "ann_file" not in node:
            node = node.dataset
        if node is not None and node.get("type") == "LVISV1Dataset":
            node.type = "LoceLVISDataset"
            changed.append(split)
    if cfg.get("dataset_type") == "LVISV1Dataset":
        cfg.dataset_type = "LoceLVISDataset"
    return [f"data.{'/'.join(changed)}.type LVISV1Dataset -> LoceLVISDataset (classes and frequency groups from "
            "the annotation file)"] if changed else []
