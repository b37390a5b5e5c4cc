"""Training code for the lung U-Net (:mod:`cxr_trainer.seg.lung`) and the input gate (:mod:`cxr_trainer.seg.gate`)."""
