"""The ML library: everything that touches model internals.

- :mod:`vidpipe_ml.inference`: the inference API (decode, batch predict, xyxy detections)
- :mod:`vidpipe_ml.cache`: models loaded from the registry by reference, bounded LRU
- :mod:`vidpipe_ml.registry`: registering model versions (and the COCO CenterNet import)
- :mod:`vidpipe_ml.catalog`: reading the registry (models, versions, aliases, labels)
- :mod:`vidpipe_ml.coco`, :mod:`vidpipe_ml.evaluation`: COCO mAP with pycocotools
- :mod:`vidpipe_ml.centernet`, :mod:`vidpipe_ml.torchvision_models`: the architectures

Services call these; nothing else imports torch models directly. This package depends on
the contracts in :mod:`vidpipe` and never on a service.
"""
