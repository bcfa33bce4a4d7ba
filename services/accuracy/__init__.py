"""Model accuracy: COCO mAP of registered model versions on labelled datasets, recorded in
MLflow and Postgres ``accuracy_reports`` (``vidpipe evaluate accuracy``), and the promotion
gate that moves an alias only to a version at least as accurate (``vidpipe models promote``).
"""
