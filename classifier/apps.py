from django.apps import AppConfig


class ClassifierConfig(AppConfig):
    name = "classifier"
    verbose_name = "Clinical"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from classifier import signals  # noqa: F401 - connects login auditing
