"""factory_boy factories for the rows tests build by hand (files are names only, not stored)."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from classifier.models import Image, Patient, Prediction, Review, Study
from training.models import Dataset, DatasetImage, ModelVersion

LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user-{n}")


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    mrn = factory.Sequence(lambda n: f"MRN-F{n}")
    name = factory.Sequence(lambda n: f"Patient {n}")


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Study

    patient = factory.SubFactory(PatientFactory)
    accession_number = factory.Sequence(lambda n: f"ACC-F{n}")


class _RefreshesStudy:
    """After creating the row, store its study's current result (``current_flag``,
    ``current_p_abnormal``, ``triage_base``, ``has_images``) as every service that writes
    an image, a prediction or a review does (``study_refresh``). The study's status and priority stay what the test
    set by hand: tests build reading orders with explicit priorities."""

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from classifier.services.studies import study_refresh

        row = super()._create(model_class, *args, **kwargs)
        study_id = row.study_id if isinstance(row, Image) else row.image.study_id
        kept = Study.objects.filter(pk=study_id).values("status", "priority").get()
        study_refresh(study_id)
        Study.objects.filter(pk=study_id).update(**kept)
        return row


class ImageFactory(_RefreshesStudy, factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    study = factory.SubFactory(StudyFactory)
    file = factory.Sequence(lambda n: f"images/f/{n}.png")
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    size_bytes = 1
    format = Image.Format.PNG
    width = 64
    height = 64


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A version row only (no artifact on disk): enough for rows that must name a model."""

    class Meta:
        model = ModelVersion

    name = "factory-model"
    version = factory.Sequence(lambda n: n + 1)
    architecture = "s0_cnn"
    input_size = 32
    labels = LABELS
    preprocess_config = factory.Dict({})
    thresholds = factory.Dict({"abnormal": 0.5})
    artifact_dir = "/nonexistent"


class PredictionFactory(_RefreshesStudy, factory.django.DjangoModelFactory):
    """A finished prediction; ``flag`` follows ``p_abnormal`` against the 0.5 threshold."""

    class Meta:
        model = Prediction

    image = factory.SubFactory(ImageFactory)
    status = Prediction.Status.DONE
    label = "NORMAL"
    p_abnormal = 0.2
    threshold = 0.5
    flag = factory.LazyAttribute(lambda o: None if o.p_abnormal is None else o.p_abnormal >= o.threshold)


class ReviewFactory(_RefreshesStudy, factory.django.DjangoModelFactory):
    class Meta:
        model = Review

    prediction = factory.SubFactory(PredictionFactory)
    image = factory.SelfAttribute("prediction.image")
    radiologist = factory.SubFactory(UserFactory)
    decision = Review.Decision.CONFIRM
    label = factory.SelfAttribute("prediction.label")


def labelled_rows(name: str = "rows") -> Dataset:
    """Dataset rows with recorded train and val splits (no files: nothing here trains)."""
    dataset = Dataset.objects.create(name=name, layout="folders", source_dir="/nowhere")
    for i in range(8):
        DatasetImage.objects.create(
            dataset=dataset,
            file=f"datasets/rows/{i}.png",
            sha256=f"{i:064d}",
            original_path=f"{i}.png",
            label=["NORMAL", "COVID19"][i % 2],
            patient_key=f"p{i}",
            split="val" if i < 4 else "train",
            format="PNG",
            width=64,
            height=64,
        )
    return dataset
