"""How the tiny nnU-Net model in this folder was made (nnU-Net 2.8.1's own trainer, CPU).

    brainmetseg synth -n 6 -o $nnUNet_raw/Dataset902_EasyPhantom --seed 11 --spacing 3 \
        --field-of-view brain --no-skull --isotropic-only --no-confounders --no-acquisition \
        --lesions 6 --diameter 15 30
    nnUNetv2_plan_and_preprocess -d 902 -c 3d_fullres -np 2
    python make_nnunet_tiny.py 0 20    # fold 0, 20 epochs (pseudo Dice 0.84)
    python make_nnunet_tiny.py 1 6     # fold 1, 6 epochs
    brainmetseg synth -n 1 -o held_out --seed 12345 (same options)  -> phantom_seed12345_*

Kept here: dataset.json, plans.json, fold_0/checkpoint_final.pth, fold_0/checkpoint_best.pth,
fold_1/checkpoint_final.pth, as nnU-Net wrote them. Needs nnunetv2 and the nnUNet_* variables.
"""

import json
import os
import sys

import torch
from nnunetv2.run.run_training import get_trainer_from_args

os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("nnUNet_compile", "f")
torch.manual_seed(0)
torch.set_num_threads(1)
pre = os.path.join(os.environ["nnUNet_preprocessed"], "Dataset902_EasyPhantom")
with open(os.path.join(pre, "nnUNetPlans.json")) as fh:
    plans = json.load(fh)
plans["plans_name"] = "nnUNetPlansTiny"
config = plans["configurations"]["3d_fullres"]
config["patch_size"], config["batch_size"] = [32, 32, 32], 2
config["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 16, 32]
with open(os.path.join(pre, "nnUNetPlansTiny.json"), "w") as fh:
    json.dump(plans, fh, indent=2)
fold, epochs = int(sys.argv[1]), int(sys.argv[2])
trainer = get_trainer_from_args("902", "3d_fullres", fold, "nnUNetTrainer", "nnUNetPlansTiny",
                                device=torch.device("cpu"))
trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 40, 4
trainer.num_epochs = epochs
trainer.run_training()
