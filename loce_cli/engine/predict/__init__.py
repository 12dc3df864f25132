"""``loce predict``: a trained model on the user's own images, drawn, and their detections as LVIS results."""

from loce_cli.engine.predict.images import PredictReport, PredictRequest, predict

__all__ = ["PredictReport", "PredictRequest", "predict"]
