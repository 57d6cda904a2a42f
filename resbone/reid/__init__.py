"""The re-identification task: the BNNeck baseline, its losses and sampler, and CMC / mAP as the field reports them."""
