"""Human masks (Section III-A): a U-Net trained offline, then run over every dataset.

`unet.UNet` predicts a person-foreground logit per pixel; `training` fits it (BCE, optionally
plus Dice) on one of the `sources`; `infer` writes one PNG mask per image where the dataset
builders read them (``MANUAL_DIR/masks/``, mirroring the image tree); `teacher` makes
pseudo-labels with MediaPipe's selfie-segmentation model (optional, `requirements-masks.txt`).
"""
