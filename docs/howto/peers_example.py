"""The code of docs/howto/peers.md, run by tests/peers/test_scoring.py on synthetic data."""

import torch
from torch import nn

import rejectnet
from rejectnet import peers

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))  # a trained classifier
x_train, y_train = torch.randn(600, 8), torch.arange(600) % 3
train_loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(x_train, y_train), batch_size=100, shuffle=True
)
id_test_loader = [(torch.randn(200, 8), torch.arange(200) % 3)]
ood_loaders = {"far": [torch.randn(200, 8) * 4], "near": [torch.randn(200, 8) + 1]}
x_val = torch.randn(100, 8)  # held-out in-distribution inputs (not the test set)
ood_tuning = {"far": torch.randn(50, 8) * 4, "near": torch.randn(50, 8) + 1}

# --8<-- [start:peers]
# one detector, on the stage-one classifier (not the RejectHead)
knn = peers.build("knn", model, fit_loader=train_loader, k=10)
report = rejectnet.evaluate(knn, id_test_loader, ood_loaders)  # same Report as rejectnet's

# all of them, sharing the fit data and the forward passes
built = peers.build_peers(
    model,
    train_loader,  # in-distribution TRAINING batches (x, y)
    settings={"knn": {"k": 10}},  # override any default by name
    tune_id=x_val,  # only for odin-tuned / mahalanobis-tuned:
    tune_ood=ood_tuning,  # a small subsample of each named OOD set
)
reports = peers.evaluate_peers(built, id_test_loader, ood_loaders, n_runs=10, seed=0)
print(rejectnet.evaluation.reports_to_markdown(reports))
# --8<-- [end:peers]
