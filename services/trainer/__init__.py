"""Trainer: fine-tunes torchvision detectors on COCO datasets from S3, registers them in
MLflow (alias ``candidate``) and promotes them to ``production`` through an accuracy gate."""
