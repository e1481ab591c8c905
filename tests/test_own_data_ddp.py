"""Own data under DDP (gloo, 2 CPU processes): rank 0 lists the folder once, the other ranks receive it."""
from __future__ import annotations

import json

import pytest
import torch.distributed as dist

from fixtures_data import make_cfg, write_text
from gloo_ranks import run_ranks
from test_own_data import TREE, write_tree


def _list(rank: int, world_size: int, roots: list[str], out: str) -> None:
    from dataloader.own import load_csv
    from utils.core.errors import DataError

    results = []
    for root in roots[rank]:  # rank 1 is given folders that do not exist: it must not list anything
        try:
            raw = load_csv(make_cfg(dataset="csv", data_path=root, noise_mode="real"), log=lambda m: None)
            results.append({"keys": list(raw.train_images.keys), "paths": list(raw.train_images.paths),
                            "labels": raw.given_labels.tolist(), "classes": raw.extra["classes"]})
        except DataError as err:
            results.append({"error": str(err)})
    with open(f"{out}.{rank}", "w") as f:
        json.dump(results, f)


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs gloo")
def test_rank0_lists_and_the_others_receive(tmp_path):
    good = tmp_path / "good"
    write_tree(good, TREE)
    keys = ["train/cat/a.jpg", "train/dog/x.png"]
    write_text(str(good / "train.csv"), ["path,label"] + [f"{k},{k.split('/')[1]}" for k in keys])
    roots = [[str(good), str(tmp_path / "missing")], [str(tmp_path / "nowhere"), str(tmp_path / "nowhere")]]
    out = str(tmp_path / "result")
    run_ranks(_list, roots, out)
    with open(f"{out}.0") as f0, open(f"{out}.1") as f1:
        rank0, rank1 = json.load(f0), json.load(f1)
    assert rank1 == rank0  # what rank 0 listed, including its error line
    assert rank0[0] == {"keys": keys, "paths": [str(good / k) for k in keys], "labels": [0, 1],
                        "classes": ["cat", "dog"]}
    assert rank0[1] == {"error": f"csv: {tmp_path}/missing/train.csv does not exist; write a CSV with the header "
                                 "path,label (or set train_csv)"}
