"""One or two examples per command, shown at the end of its ``--help`` (tests check that each one parses)."""

from __future__ import annotations

SYNTH_BASE = "synthetic/mask_rcnn_r18_fpn_normed_synth"
SYNTH_LOCE = "synthetic/loce_mask_rcnn_r18_fpn_normed_synth"
LVIS_BASE = "lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1"
LVIS_LOCE = "lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1"

EXAMPLES = {
    "": ["loce quickstart", "loce data synth --out data/synth"],
    "data": ["loce data synth --out data/synth", "loce data prep --root data/lvis_v1"],
    "data synth": ["loce data synth --out data/synth",
                   "loce data synth --like lvis-v1 --out data/lvis_v1"],
    "data stats": ["loce data stats data/synth/annotations/lvis_v1_train.json --plot train_stats.png"],
    "data prep": ["loce data prep --root data/lvis_v1",
                  "loce data prep --root data/lvis_v1 --subset 0.1 --out data/lvis_v1_10pct"],
    "data import": ["loce data import coco data/mine --train mine/train.json --train-images mine/images "
                    "--val mine/val.json --val-images mine/images"],
    "data import coco": ["loce data import coco data/mine --train mine/train.json --train-images mine/images "
                         "--val mine/val.json --val-images mine/images",
                         "loce data import coco data/mine --train t.json --train-images img --val v.json "
                         "--val-images img --rare-max 5 --common-max 50 --force"],
    "configs": ["loce configs", "loce configs --json"],
    "train": [f"loce train base {SYNTH_BASE} --work-dir runs/base"],
    "train base": [f"loce train base {SYNTH_BASE} --work-dir runs/base",
                   f"loce train base {LVIS_BASE} --gpus 8 --work-dir runs/r50_base"],
    "finetune": [f"loce finetune {SYNTH_LOCE} --from runs/base/latest.pth --work-dir runs/loce",
                 "loce finetune CONFIG --work-dir runs/loce --resume"],
    "eval": [f"loce eval {SYNTH_LOCE} runs/loce/latest.pth --split rare",
             "loce eval --results results.json --ann data/lvis_v1/annotations/lvis_v1_val.json --protocol fixed"],
    "report": ["loce report runs/base/eval runs/loce/eval --split rare",
               "loce report 'plain=runs/plain_seed*/eval' 'loce=runs/loce_seed*/eval' --format md"],
    "analyze": ["loce analyze runs/loce/eval --compare runs/base/eval --plot analysis.png",
                "loce analyze results.json --ann data/lvis_v1/annotations/lvis_v1_val.json --metric segm --json"],
    "inspect": ["loce inspect scores runs/loce/latest.pth --lowest 10"],
    "inspect scores": ["loce inspect scores runs/loce/latest.pth --lowest 10 --split rare --plot scores.png"],
    "inspect memory": ["loce inspect memory runs/loce/latest.pth --plot memory.png"],
    "predict": [f"loce predict {SYNTH_LOCE} runs/loce/latest.pth 'photos/*.jpg' --out preds"],
    "quickstart": ["loce quickstart", "loce quickstart --work-dir work/quickstart --json"],
    "doctor": ["loce doctor", "loce doctor --json"],
}
