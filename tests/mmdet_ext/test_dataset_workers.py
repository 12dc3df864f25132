"""The official lvis API inside data loaders: the dataset (holding an ``lvis.LVIS``) must survive pickling, as
with the 'spawn' start method (macOS, Windows, CUDA workers), and category lookups must work after it."""

import pickle

import torch


def test_lvis_dataset_pickles_and_loads_in_spawned_workers(tiny_dataset):
    from mmcv.parallel import collate
    from mmdet.datasets import build_dataset

    from tests.mmdet_ext.test_dataset import PIPELINE

    pipeline = [p for p in PIPELINE if p["type"] not in ("LoadAnnotations", "DefaultFormatBundle", "Collect")] + [
        dict(type="ImageToTensor", keys=["img"]), dict(type="Collect", keys=["img"])]
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    ds = build_dataset(dict(type="LoceLVISDataset", ann_file=str(ann), img_prefix=str(tiny_dataset),
                            pipeline=pipeline, test_mode=True))
    back = pickle.loads(pickle.dumps(ds))
    assert back.CLASSES == ds.CLASSES and back.img_ids == ds.img_ids
    assert back.coco.load_cats([back.cat_ids[0]])[0]["name"] == ds.CLASSES[0]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate,
                                         multiprocessing_context="spawn")
    batches = list(loader)
    metas = [m for b in batches for chunk in b["img_metas"].data for m in chunk]
    assert [m["ori_filename"] for m in metas] == [ds.data_infos[i]["filename"] for i in range(len(ds))]
