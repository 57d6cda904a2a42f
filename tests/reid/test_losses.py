"""The ID loss equals torchreid's CrossEntropyLoss(label_smooth=True) and torch's cross_entropy(label_smoothing=);
the batch-hard triplet loss (margin 0.3 and soft margin) equals torchreid's TripletLoss and fast-reid's
triplet_loss, values and gradients; the center loss equals its definition computed by hand."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resbone.reid.losses import CenterLoss, ReidCriterion, TripletLoss
from tests.reid.references import fastreid, torchreid


def _pk_batch(rng: torch.Generator, p: int = 4, k: int = 3, dim: int = 8):
    labels = torch.arange(p).repeat_interleave(k)[torch.randperm(p * k, generator=rng)]
    return torch.randn(p * k, dim, generator=rng), labels


def _value_and_grad(loss_fn, x, *args):
    x = x.clone().requires_grad_(True)
    loss = loss_fn(x, *args)
    loss.backward()
    return loss.detach(), x.grad


def test_label_smoothing_cross_entropy_equals_torchreid_and_torch(rng):
    embedding, labels = _pk_batch(rng)
    logits = torch.randn(len(labels), 4, generator=rng)
    reference = torchreid().CrossEntropyLoss(num_classes=4, eps=0.1, use_gpu=False, label_smooth=True)
    criterion = ReidCriterion(4, 8)
    theirs, their_grad = _value_and_grad(reference, logits, labels)
    mine, my_grad = _value_and_grad(lambda x, y: criterion(x, embedding, y)["loss_id"], logits, labels)
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(mine, F.cross_entropy(logits, labels, label_smoothing=0.1))
    torch.testing.assert_close(my_grad, their_grad)


@pytest.mark.parametrize("seed", range(3))
def test_batch_hard_triplet_equals_torchreid_and_fastreid(seed):
    embedding, labels = _pk_batch(torch.Generator().manual_seed(seed))
    mine, my_grad = _value_and_grad(TripletLoss(0.3), embedding, labels)
    theirs, their_grad = _value_and_grad(torchreid().TripletLoss(margin=0.3), embedding, labels)
    fast, fast_grad = _value_and_grad(lambda x, y: fastreid().triplet_loss(x, y, 0.3, False, True), embedding, labels)
    assert mine > 0
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(mine, fast)
    torch.testing.assert_close(my_grad, their_grad)
    torch.testing.assert_close(my_grad, fast_grad)


def test_soft_margin_triplet_equals_fastreid(rng):
    embedding, labels = _pk_batch(rng)
    mine, my_grad = _value_and_grad(TripletLoss(None), embedding, labels)
    fast, fast_grad = _value_and_grad(lambda x, y: fastreid().triplet_loss(x, y, 0, False, True), embedding, labels)
    torch.testing.assert_close(mine, fast)
    torch.testing.assert_close(my_grad, fast_grad)


def test_center_loss_is_the_mean_squared_distance_to_the_class_centre(rng):
    embedding, labels = _pk_batch(rng)
    center = CenterLoss(4, 8)
    by_hand = sum(float(((embedding[i] - center.centers[labels[i]].detach()) ** 2).sum()) for i in range(len(labels)))
    assert center(embedding, labels).item() == pytest.approx(by_hand / len(labels), rel=1e-5)
    losses = ReidCriterion(4, 8, center_weight=0.0005)(torch.randn(12, 4, generator=rng), embedding, labels)
    assert set(losses) == {"loss_id", "loss_triplet", "loss_center"}


def test_a_batch_without_positives_or_negatives_is_refused(rng):
    with pytest.raises(ValueError, match="two images of each identity"):
        TripletLoss()(torch.randn(4, 8, generator=rng), torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="at least two identities"):
        TripletLoss()(torch.randn(4, 8, generator=rng), torch.tensor([5, 5, 5, 5]))
    with pytest.raises(ValueError, match="margin must be a positive number or None"):
        TripletLoss(-1.0)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        ReidCriterion(4, 8, label_smoothing=1.0)
