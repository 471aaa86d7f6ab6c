"""Data: sources -> uint8 NHWC arrays (``load``) -> device-resident training batches."""

from genimg.data.pipeline import TrainData, scale_images
from genimg.data.sources import DataError, ImageData, load

__all__ = ["DataError", "ImageData", "TrainData", "load", "scale_images"]
