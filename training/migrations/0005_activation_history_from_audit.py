"""Seed the activation history from the audit log's ``model_activate`` events (replayed in
order, a rollback undoing the latest promotion of the version it left), so the first
rollback after this migration walks back instead of toggling. Reversible: the seeded
rows are deleted."""

from django.db import migrations


def seed(apps, schema_editor):
    ModelVersion = apps.get_model("training", "ModelVersion")
    ModelActivation = apps.get_model("training", "ModelActivation")
    AuditEvent = apps.get_model("classifier", "AuditEvent")
    versions = {str(v.pk): v for v in ModelVersion.objects.all()}
    active = {}
    events = AuditEvent.objects.filter(action="model_activate", object_type="training.modelversion")
    for event in events.order_by("created_at", "pk"):
        version = versions.get(event.object_id)
        previous = active.get(version.name) if version is not None else None
        if version is None or (previous is not None and previous.pk == version.pk):
            continue
        rollback = (event.detail or {}).get("reason") == "rollback"
        if rollback and previous is not None:
            undone = (
                ModelActivation.objects.filter(
                    name=version.name, version=previous, kind="promote", undone_at__isnull=True
                )
                .order_by("-created_at", "-pk")
                .first()
            )
            if undone is not None:
                ModelActivation.objects.filter(pk=undone.pk).update(undone_at=event.created_at)
        ModelActivation.objects.create(
            name=version.name,
            version=version,
            previous=previous,
            kind="rollback" if rollback else "promote",
            reason=str((event.detail or {}).get("reason") or ""),
            actor_id=event.actor_id,
            created_at=event.created_at,
        )
        active[version.name] = version
    for version in ModelVersion.objects.filter(status="active"):
        known = active.get(version.name)
        if known is None or known.pk != version.pk:  # activated without an audit event
            ModelActivation.objects.create(
                name=version.name,
                version=version,
                previous=known,
                kind="promote",
                reason="active before the activation history was recorded",
                created_at=version.activated_at or version.created_at,
            )


def unseed(apps, schema_editor):
    apps.get_model("training", "ModelActivation").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0004_activation_history"),
        ("classifier", "0004_viewer_film_and_geometry"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
