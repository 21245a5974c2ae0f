"""TensorFlow trainers: architectures, cached data pipeline, resumable training, export.

Importing this package (or any module in it) never imports TensorFlow: every TF/Keras
import happens inside functions, so Django code can import specs and recipes freely.
Main entry points: ``train.TrainSpec``, ``train.train``, ``export.write_artifact``,
``recipes.DEFAULT_RECIPE``, ``python -m training.trainers.experiments``.
"""
