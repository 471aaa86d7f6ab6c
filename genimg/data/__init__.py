"""Data: sources -> uint8 NHWC arrays (``load``; ``paired:`` sources add the inputs of
image-to-image models) -> device-resident training batches."""

from genimg.data.paired import load
from genimg.data.pipeline import TrainData, decode_inputs, scale_images
from genimg.data.sources import DataError, ImageData

__all__ = ["DataError", "ImageData", "TrainData", "decode_inputs", "load", "scale_images"]
