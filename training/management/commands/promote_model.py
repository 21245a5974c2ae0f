"""python manage.py promote_model VERSION [--name NAME] [--reason TEXT] [--override-reason TEXT] [--check]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from training import registry
from training.models import ModelVersion
from training.services.promotion import promotion_gate, version_promote


class Command(BaseCommand):
    help = (
        "Make a registered model version active through the promotion gate (the same rule as a training run "
        "and the promote page); a version that fails it goes live only with --override-reason."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("version", type=int, help="The version number within its registry name.")
        parser.add_argument("--name", default=registry.DEFAULT_NAME, help="Registry name (default: %(default)s).")
        parser.add_argument("--reason", default="promoted with manage.py promote_model", help="Recorded reason.")
        parser.add_argument("--override-reason", default="", help="Promote over a failed gate, recording why.")
        parser.add_argument("--check", action="store_true", help="Print the gate's verdict; change nothing.")

    def handle(self, *args: Any, **opts: Any) -> None:
        version = ModelVersion.objects.filter(name=opts["name"], version=opts["version"]).first()
        if version is None:
            raise CommandError(f"There is no version {opts['version']} of {opts['name']}.")
        gate = promotion_gate(version)
        self.stdout.write(f"gate ({gate.get('basis', 'recorded')}; {gate['source']}):")
        for reason in gate.get("reasons", []):
            self.stdout.write(f"  {reason}")
        if opts["check"]:
            return
        try:
            version = version_promote(
                version=version, actor=None, reason=opts["reason"], override_reason=opts["override_reason"]
            )
        except registry.RegistryError as exc:  # PromotionRefused included: the gate failed
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{version} is active")
